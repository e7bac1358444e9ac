#include "internal/origin_fetcher.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

// The typical fetch time is the median of this many recent answered origin calls, once there are
// at least kMinFetchSamples of them (before that, every fetch that gets a permit is sent).
constexpr size_t kFetchLatencyWindow = 101;
constexpr size_t kMinFetchSamples = 10;

bool IsAnswer(const absl::Status& status) { return status.ok() || absl::IsNotFound(status); }

}  // namespace

// Held (through a PinRef) by every closure that captures `this` and may run on another thread or
// after Fetch() returned. Counting origin calls alone is not enough: a hedge timer that has decided
// to send a hedge, or a permit being handed to a queued fetch, runs between two calls.
class OriginFetcher::Pin final {
 public:
  explicit Pin(OriginFetcher& fetcher) : fetcher_(fetcher) {
    absl::MutexLock lock(&fetcher_.pins_mu_);
    ++fetcher_.pins_;
  }
  ~Pin() {
    absl::MutexLock lock(&fetcher_.pins_mu_);
    --fetcher_.pins_;
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;

 private:
  OriginFetcher& fetcher_;
};

// One origin call: reported once, by the origin's callback or by the catch in Send().
struct OriginFetcher::Call {
  OriginFetcher* fetcher;
  uint32_t attempt;
  absl::Time start;
  ConcurrencyLimiter::Permit permit;
  FetchCallback report;
  PinRef pin;
  std::atomic<bool> reported{false};
};

OriginFetcher::OriginFetcher(Origin& origin, TimerQueue& timers, FetchLimits limits,
                             const HedgeOptions& hedge, CallObserver observer)
    : origin_(origin),
      origin_name_(origin.Describe()),
      timers_(timers),
      observer_(std::move(observer)),
      limiter_(limits.adaptive ? limits.adaptive->min_limit : limits.max_concurrent,
               limits.max_queued,
               {.lifo_after = limits.lifo_after > absl::ZeroDuration() ? limits.lifo_after
                                                                       : absl::InfiniteDuration(),
                .clock = &timers.clock()}),
      hedger_(hedge, timers),
      latency_(kFetchLatencyWindow),
      adaptive_(limits.adaptive ? std::make_unique<AdaptiveLimit>(*limits.adaptive) : nullptr) {}

OriginFetcher::~OriginFetcher() {
  absl::MutexLock lock(&pins_mu_);
  pins_mu_.Await(absl::Condition(
      +[](int64_t* n) { return *n == 0; }, &pins_));
}

void OriginFetcher::Fetch(std::string key, absl::Time deadline, const std::stop_token& cancel,
                          Callback done) {
  auto pin = std::make_shared<const Pin>(*this);
  limiter_.Acquire(
      cancel, [this, key = std::move(key), deadline, cancel, done = std::move(done),
               pin = std::move(pin)](absl::StatusOr<ConcurrencyLimiter::Permit> permit) mutable {
        Granted(std::move(permit), key, deadline, cancel, std::move(done), std::move(pin));
      });
}

void OriginFetcher::Granted(absl::StatusOr<ConcurrencyLimiter::Permit> permit,
                            const std::string& key, absl::Time deadline,
                            const std::stop_token& cancel, Callback done, PinRef pin) {
  if (!permit.ok()) {
    done({FetchOutcome::End::kNotSent, permit.status()});
    return;
  }
  if (cancel.stop_requested()) {  // the permit is released as `permit` goes out of scope
    done({FetchOutcome::End::kNotSent, absl::CancelledError("fetch cancelled in the queue")});
    return;
  }
  if (absl::Status late = TooLateToFetch(deadline); !late.ok()) {
    too_late_.fetch_add(1, std::memory_order_relaxed);
    done({FetchOutcome::End::kNotSent, std::move(late)});
    return;
  }
  // Attempt 1 takes the permit the fetch waited for; a hedge takes one now or is not sent.
  auto primary = std::make_shared<ConcurrencyLimiter::Permit>(*std::move(permit));
  hedger_.Run(
      cancel,
      [this, pin, primary, key, deadline](uint32_t attempt, std::stop_token stop,
                                          FetchCallback report) {
        ConcurrencyLimiter::Permit held;
        if (attempt == 1) {
          held = std::move(*primary);
        } else if (std::optional<ConcurrencyLimiter::Permit> free = limiter_.TryAcquire()) {
          held = *std::move(free);
        } else {
          return false;
        }
        Send(FetchRequest{key, attempt, deadline}, std::move(stop), std::move(held),
             std::move(report), pin);
        return true;
      },
      [this, pin, deadline, done = std::move(done)](absl::StatusOr<FetchResult> result) mutable {
        const PinRef held_pin = std::move(pin);  // released when this call ends
        FetchOutcome outcome{FetchOutcome::End::kAnswered, std::move(result)};
        if (CutByDeadline(outcome.result.status(), deadline)) {
          cut_by_deadline_.fetch_add(1, std::memory_order_relaxed);
          outcome.end = FetchOutcome::End::kCutByDeadline;
        }
        done(std::move(outcome));
        done = nullptr;  // before `held_pin` goes
      });
}

// Not OK when less time is left before `deadline` than a typical answered origin call takes.
absl::Status OriginFetcher::TooLateToFetch(absl::Time deadline) const {
  const absl::Duration left = deadline - timers_.clock().Now();
  absl::Duration typical;
  {
    absl::MutexLock lock(&latency_mu_);
    if (latency_.size() < kMinFetchSamples) return absl::OkStatus();
    typical = latency_.Percentile(50);
  }
  if (left >= typical) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("origin ", origin_name_, " not asked: the load waited in the queue until ",
                   absl::FormatDuration(left), " of its timeout was left, and the origin takes ",
                   absl::FormatDuration(typical), " to answer (median)"));
}

// The fetch ended because its deadline stopped it (the owner's timer cancelling it, or the origin
// client's deadline, which is the same instant) while the origin was still working on it. The
// origin client may keep that deadline on another clock (gRPC: wall-clock time) and fire a little
// before ours reaches it: hence the slack.
bool OriginFetcher::CutByDeadline(const absl::Status& status, absl::Time deadline) const {
  constexpr absl::Duration kOtherClockSlack = absl::Milliseconds(2);
  return (absl::IsCancelled(status) || absl::IsDeadlineExceeded(status)) &&
         timers_.clock().Now() + kOtherClockSlack >= deadline;
}

// One origin call under `permit`, timed. `pin` keeps this object alive until it has been reported.
void OriginFetcher::Send(const FetchRequest& request, std::stop_token cancel,
                         ConcurrencyLimiter::Permit permit, FetchCallback report, PinRef pin) {
  auto call = std::make_shared<Call>();
  call->fetcher = this;
  call->attempt = request.attempt;
  call->start = timers_.clock().Now();
  call->permit = std::move(permit);
  call->report = std::move(report);
  call->pin = std::move(pin);
  try {
    origin_.Fetch(request, std::move(cancel),
                  [call](absl::StatusOr<FetchResult> result) { Finish(*call, std::move(result)); });
  } catch (const std::exception& e) {
    Finish(*call, absl::InternalError(absl::StrCat("origin fetch attempt ", request.attempt,
                                                   " threw: ", e.what())));
  } catch (...) {
    Finish(*call, absl::InternalError(absl::StrCat("origin fetch attempt ", request.attempt,
                                                   " threw a non-exception")));
  }
}

void OriginFetcher::Finish(Call& call, absl::StatusOr<FetchResult> result) {
  // Only the first report counts (an origin that threw may still call back later); a later one
  // must not touch the fetcher, which may be gone.
  if (call.reported.exchange(true)) return;
  const PinRef held_pin = std::move(call.pin);  // released when this call ends
  OriginFetcher& self = *call.fetcher;
  const absl::Duration latency = self.timers_.clock().Now() - call.start;
  if (IsAnswer(result.status())) {
    absl::MutexLock lock(&self.latency_mu_);
    self.latency_.Add(latency);
  }
  self.AdaptLimit(latency, result.status());
  if (self.observer_) self.observer_(call.attempt, latency, result.status());
  // The origin call has ended: only now does its concurrency slot come free.
  call.permit.Release();
  FetchCallback report = std::move(call.report);
  report(std::move(result));
}

// Feeds one ended origin call (its permit still held, so it counts itself in flight) to the
// adaptive limit. Cancelled calls and other errors say nothing about the origin's capacity.
void OriginFetcher::AdaptLimit(absl::Duration latency, const absl::Status& status) {
  if (adaptive_ == nullptr) return;  // a fixed limit: no lock taken here
  const bool answer = IsAnswer(status);
  const bool overload = absl::IsDeadlineExceeded(status) || absl::IsResourceExhausted(status);
  if (!answer && !overload) return;
  const int64_t in_flight = limiter_.in_use();
  int64_t limit;
  {
    absl::MutexLock lock(&latency_mu_);
    limit = answer ? adaptive_->OnAnswer(latency, in_flight) : adaptive_->OnOverload(in_flight);
  }
  if (limit != limiter_.permits()) limiter_.SetPermits(limit);
}

OriginFetcherStats OriginFetcher::stats() const {
  const HedgeStats hedges = hedger_.stats();
  return {.fetches = hedges.fetches,
          .hedges_sent = hedges.hedges_sent,
          .hedges_won = hedges.hedges_won,
          .queued = limiter_.queued(),
          .lifo_handoffs = limiter_.lifo_handoffs(),
          .too_late = too_late_.load(std::memory_order_relaxed),
          .cut_by_deadline = cut_by_deadline_.load(std::memory_order_relaxed),
          .concurrency_limit = limiter_.permits()};
}

}  // namespace flightcache
