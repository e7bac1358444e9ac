// AwaitAll / AwaitAny: wait for several flights at once, and cancel what is no longer wanted.
// Test helpers (the pitfall tests): the core itself never blocks.
//
// Each input is a PendingFlight: a Future plus the way to say "I no longer want this" (for a
// SingleFlightGroup waiter, FlightWaiter::Cancel; for a flight you own, your stop_source). On
// every early return — AwaitAny's winner, AwaitAll's first error in fail-fast mode, or the
// caller's CallContext ending — every flight not yet complete is cancelled before returning, so
// no loser or sibling runs on unobserved. Both always return (never hang) and always return one
// result per input in AwaitAll's case.
//
// Thread-safety: the functions are thread-safe; each call owns its inputs.
//
// Usage:
//   std::vector<PendingFlight<std::string>> flights = ...;
//   auto results = AwaitAll(flights, ctx, AwaitAllMode::kFailFast);
//   AnyResult<std::string> first = AwaitAny(flights, ctx);
#ifndef FLIGHTCACHE_TESTS_TESTING_AWAIT_H_
#define FLIGHTCACHE_TESTS_TESTING_AWAIT_H_

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stop_token>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/call_context.h"
#include "flightcache/flight.h"

namespace flightcache::testing {

template <typename T>
struct PendingFlight {
  Future<T> future;
  absl::AnyInvocable<void()> cancel;  // may be empty: nothing to cancel
};

enum class AwaitAllMode {
  kAll,       // wait for every flight, whatever its outcome
  kFailFast,  // return at the first error; the rest are cancelled and reported CANCELLED
};

template <typename T>
struct AnyResult {
  int index = -1;  // the winner, or -1 when none answered OK
  SharedResult<T> result;
};

namespace internal {

// Shared by one Await call and the completion callbacks of its flights.
template <typename T>
struct AwaitState {
  explicit AwaitState(size_t n) : results(n) {}
  absl::Mutex mu;
  std::vector<SharedResult<T>> results ABSL_GUARDED_BY(mu);
  size_t completed ABSL_GUARDED_BY(mu) = 0;
  int first_ok ABSL_GUARDED_BY(mu) = -1;
  int first_error ABSL_GUARDED_BY(mu) = -1;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
};

struct AwaitOutcome {
  absl::Status ended_early;  // OK when `done` held; else CANCELLED / DEADLINE_EXCEEDED (ctx)
  int first_ok = -1;
  int first_error = -1;
};

// Subscribes to every flight, waits until `done(state)` holds or ctx ends, then unsubscribes
// and cancels every flight that has not completed. Returns the results so far (null where none).
template <typename T, typename Done>
std::vector<SharedResult<T>> AwaitUntil(std::vector<PendingFlight<T>>& flights,
                                        const CallContext& ctx, Done done, AwaitOutcome* outcome) {
  auto state = std::make_shared<AwaitState<T>>(flights.size());
  std::vector<Subscription<T>> subscriptions;
  subscriptions.reserve(flights.size());
  for (size_t i = 0; i < flights.size(); ++i) {
    subscriptions.push_back(flights[i].future.OnComplete([state, i](const SharedResult<T>& r) {
      absl::MutexLock lock(&state->mu);
      state->results[i] = r;
      state->completed++;
      if (r->ok() && state->first_ok < 0) state->first_ok = static_cast<int>(i);
      if (!r->ok() && state->first_error < 0) state->first_error = static_cast<int>(i);
    }));
  }
  {
    std::stop_callback on_cancel(ctx.stop_token(), [state] {
      absl::MutexLock lock(&state->mu);
      state->cancelled = true;
    });
    absl::MutexLock lock(&state->mu);
    auto finished = [&]()
                        ABSL_NO_THREAD_SAFETY_ANALYSIS { return state->cancelled || done(*state); };
    state->mu.AwaitWithDeadline(absl::Condition(&finished),
                                ::flightcache::internal::WallDeadline(ctx.deadline()));
    outcome->first_ok = state->first_ok;
    outcome->first_error = state->first_error;
    if (state->cancelled) {
      outcome->ended_early = absl::CancelledError("call cancelled");
    } else if (!done(*state)) {
      outcome->ended_early = absl::DeadlineExceededError("call deadline exceeded");
    }
  }
  for (size_t i = 0; i < flights.size(); ++i) {
    // A flight that completes during this loop is left alone: Cancel() reports it ran.
    if (subscriptions[i].Cancel() && flights[i].cancel) flights[i].cancel();
  }
  // Report what really happened: a flight that completed while we were cancelling the others
  // keeps its own result rather than being reported as cut short.
  absl::MutexLock lock(&state->mu);
  return state->results;
}

}  // namespace internal

// One result per flight, in input order. Flights cut short (fail-fast, or ctx ended) get
// CANCELLED, or the context's own status when it was the context that ended.
template <typename T>
std::vector<SharedResult<T>> AwaitAll(std::vector<PendingFlight<T>>& flights,
                                      const CallContext& ctx = CallContext(),
                                      AwaitAllMode mode = AwaitAllMode::kAll) {
  const size_t n = flights.size();
  internal::AwaitOutcome outcome;
  auto results = internal::AwaitUntil<T>(
      flights, ctx,
      [n, mode](const internal::AwaitState<T>& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return s.completed == n || (mode == AwaitAllMode::kFailFast && s.first_error >= 0);
      },
      &outcome);
  absl::Status cut_short = outcome.ended_early;
  if (cut_short.ok()) cut_short = absl::CancelledError("a sibling failed first");
  for (auto& r : results) {
    if (r == nullptr) r = MakeSharedResult<T>(cut_short);
  }
  return results;
}

// The first flight to answer OK wins; every other flight still running is cancelled. When none
// answers OK, index is -1 and `result` is the first error (or the context's status).
template <typename T>
AnyResult<T> AwaitAny(std::vector<PendingFlight<T>>& flights,
                      const CallContext& ctx = CallContext()) {
  const size_t n = flights.size();
  internal::AwaitOutcome outcome;
  auto results = internal::AwaitUntil<T>(
      flights, ctx,
      [n](const internal::AwaitState<T>& s)
          ABSL_NO_THREAD_SAFETY_ANALYSIS { return s.first_ok >= 0 || s.completed == n; },
      &outcome);
  if (outcome.first_ok >= 0) return {outcome.first_ok, results[outcome.first_ok]};
  if (!outcome.ended_early.ok()) return {-1, MakeSharedResult<T>(outcome.ended_early)};
  if (outcome.first_error >= 0) return {-1, results[outcome.first_error]};
  return {-1, MakeSharedResult<T>(absl::InvalidArgumentError("no flight to wait for"))};
}

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_AWAIT_H_
