// OriginFetcher: one load's origin fetch under the concurrency limit, hedged. The one owner of
// fetch permits and the one place an origin's exception is caught.
//
// Fetch() waits for a permit of its ConcurrencyLimiter (K permits, a bounded FIFO queue: a full
// queue is RESOURCE_EXHAUSTED at once). K is fixed, or found by an AdaptiveLimit from the latency
// of the origin's answers. With the permit, a fetch that has less time left before its
// deadline than a typical fetch takes (the median of recent answered fetches) is not sent: under
// overload it would only make the origin do work that is cut off half way while the fetches behind
// it wait. Otherwise it goes to the Origin through the Hedger: the primary attempt under the permit
// it waited for, a hedge under a permit taken without queueing (none free: no hedge, no token
// spent). Each permit comes free when its origin call has ended — when the origin answers, also
// after a cancellation — never when the hedger has decided: a cancelled or beaten attempt is still
// in flight at the origin until it answers, and K bounds the calls the origin sees.
//
// An Origin::Fetch that throws (the Origin contract forbids it) is caught here and that attempt
// reports INTERNAL: a hedge starts on a timer thread where nobody else could catch it, and an
// attempt that never reports would leave the fetch waiting forever.
//
// Thread-safety: thread-safe. `done` runs exactly once, without locks held, on the thread that
// decided the fetch (the caller's, a releasing permit's, an origin's or a timer's).
//
// Lifetime: `origin` and `timers` must outlive this object. The destructor waits until no callback
// of a fetch can reach this object any more (queued grants, origin callbacks, hedge timers): the
// owner cancels every fetch first (their stop tokens), and origins stop promptly once cancelled.
//
// Usage:
//   OriginFetcher fetcher(origin, timers, {.max_concurrent = 64, .max_queued = 10000}, hedge);
//   fetcher.Fetch(key, deadline, load_stop_token, [](FetchOutcome o) { ... });
#ifndef FLIGHTCACHE_INTERNAL_ORIGIN_FETCHER_H_
#define FLIGHTCACHE_INTERNAL_ORIGIN_FETCHER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/adaptive_limit.h"
#include "flightcache/concurrency_limiter.h"
#include "flightcache/hedger.h"
#include "flightcache/latency_window.h"
#include "flightcache/origin.h"
#include "flightcache/timer_queue.h"

namespace flightcache {

struct FetchLimits {
  int64_t max_concurrent = 64;  // origin calls in flight at once (primaries and hedges)
  int64_t max_queued = 10000;   // fetches waiting for a permit
  // Set: the limit is found as the origin answers (AdaptiveLimit) and max_concurrent is unused.
  std::optional<AdaptiveLimitOptions> adaptive;
  // Adaptive LIFO after the oldest queued fetch waited this long (ConcurrencyLimiterOptions);
  // zero: FIFO always.
  absl::Duration lifo_after = absl::ZeroDuration();
};

// How one Fetch() ended.
struct FetchOutcome {
  enum class End {
    kAnswered,       // `result` is the origin's: the winning answer, or the primary's error
    kNotSent,        // no origin call: queue full, cancelled, or too late (`result` says which)
    kCutByDeadline,  // the deadline stopped the fetch while the origin was still working on it
  };
  End end = End::kAnswered;
  absl::StatusOr<FetchResult> result;
};

struct OriginFetcherStats {
  int64_t fetches = 0;  // origin calls sent: primaries + hedges
  int64_t hedges_sent = 0;
  int64_t hedges_won = 0;
  int64_t queued = 0;             // fetches waiting for a permit now
  int64_t lifo_handoffs = 0;      // permits handed to the newest queued fetch (adaptive LIFO)
  int64_t too_late = 0;           // fetches not sent: too little time left for a typical fetch
  int64_t cut_by_deadline = 0;    // fetches whose deadline stopped them at the origin
  int64_t concurrency_limit = 0;  // origin calls allowed in flight now
};

class OriginFetcher final {
 public:
  using Callback = absl::AnyInvocable<void(FetchOutcome)>;
  // Called once per origin call that ended (any attempt), with its latency. Must be thread-safe.
  using CallObserver =
      std::function<void(uint32_t attempt, absl::Duration latency, const absl::Status& status)>;

  // REQUIRES: limits.max_concurrent >= 1, limits.max_queued >= 0, hedge.Validate().ok().
  OriginFetcher(Origin& origin, TimerQueue& timers, FetchLimits limits, const HedgeOptions& hedge,
                CallObserver observer = nullptr);
  ~OriginFetcher();
  OriginFetcher(const OriginFetcher&) = delete;
  OriginFetcher& operator=(const OriginFetcher&) = delete;

  // Fetches `key` before `deadline`; `cancel` stops the wait or the origin calls (`done` then gets
  // CANCELLED, or kCutByDeadline once the deadline has come).
  void Fetch(std::string key, absl::Time deadline, const std::stop_token& cancel, Callback done);

  OriginFetcherStats stats() const;
  const std::string& origin_name() const { return origin_name_; }

 private:
  class Pin;
  using PinRef = std::shared_ptr<const Pin>;
  struct Call;

  void Granted(absl::StatusOr<ConcurrencyLimiter::Permit> permit, const std::string& key,
               absl::Time deadline, const std::stop_token& cancel, Callback done, PinRef pin);
  absl::Status TooLateToFetch(absl::Time deadline) const;
  bool CutByDeadline(const absl::Status& status, absl::Time deadline) const;
  void Send(const FetchRequest& request, std::stop_token cancel, ConcurrencyLimiter::Permit permit,
            FetchCallback report, PinRef pin);
  static void Finish(Call& call, absl::StatusOr<FetchResult> result);
  void AdaptLimit(absl::Duration latency, const absl::Status& status);

  Origin& origin_;
  const std::string origin_name_;
  TimerQueue& timers_;
  const CallObserver observer_;
  ConcurrencyLimiter limiter_;
  Hedger hedger_;
  // Statistics only, never used to order other memory.
  std::atomic<int64_t> too_late_{0}, cut_by_deadline_{0};
  mutable absl::Mutex latency_mu_;
  LatencyWindow latency_ ABSL_GUARDED_BY(latency_mu_);  // recent answered origin calls
  // Set with FetchLimits::adaptive (the pointer is fixed, so a fixed limit checks it without the
  // lock). Two calls that end at once may apply their new limits out of order; the next batch
  // corrects it (SetPermits runs outside the lock: it may start fetches).
  const std::unique_ptr<AdaptiveLimit> adaptive_ ABSL_PT_GUARDED_BY(latency_mu_);
  absl::Mutex pins_mu_;
  int64_t pins_ ABSL_GUARDED_BY(pins_mu_) = 0;  // live Pins
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_INTERNAL_ORIGIN_FETCHER_H_
