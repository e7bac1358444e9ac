#include "flightcache/hedger.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "flightcache/option_checks.h"

namespace flightcache {
namespace {

// Budgets such as 0.05 do not add up to exactly 1.0 in binary floating point; without this
// slack, twenty primaries would earn 0.9999999 tokens and never pay for a hedge.
constexpr double kTokenEpsilon = 1e-9;

// An adaptive delay never goes below this: a window of instant fetches would otherwise give a
// zero delay and hedge every fetch that is not instant.
constexpr absl::Duration kMinAdaptiveDelay = absl::Milliseconds(1);

// Far above any sensible hedge delay; low enough that no timer computed from it overflows.
constexpr absl::Duration kMaxDelay = absl::Hours(24);

bool IsAnswer(const absl::StatusOr<FetchResult>& result) {
  return result.ok() || absl::IsNotFound(result.status());
}

}  // namespace

absl::Status HedgeOptions::Validate() const {
  if (!(budget >= 0 && budget <= 1)) {
    return OptionError("budget", absl::StrCat("must be a fraction in [0, 1], got ", budget));
  }
  if (!(max_tokens >= 1)) {
    return OptionError("max_tokens",
                       absl::StrCat("must be >= 1 (a hedge costs one token), got ", max_tokens));
  }
  if (absl::Status s = CheckPositiveDuration("delay", delay, kMaxDelay); !s.ok()) return s;
  if (!(percentile >= 0 && percentile < 100)) {
    return OptionError(
        "percentile",
        absl::StrCat("must be in (0, 100), or 0 for the fixed delay, got ", percentile));
  }
  if (absl::Status s =
          CheckPositiveDuration("adaptive_fallback_delay", adaptive_fallback_delay, kMaxDelay);
      !s.ok()) {
    return s;
  }
  if (window_size < 1) {
    return OptionError("window_size", absl::StrCat("must be >= 1, got ", window_size));
  }
  if (min_samples < 1 || min_samples > window_size) {
    return OptionError("min_samples", absl::StrCat("must be in [1, window_size=", window_size,
                                                   "], got ", min_samples));
  }
  return absl::OkStatus();
}

// The state machine of one Run(). Shared by the two attempts' callbacks (strong references) and
// by the hedge timer and the run's stop callback (weak references, so that neither keeps a
// finished run alive). Every transition happens under `mu`; attempts, user callbacks, timer
// cancellation and stop requests happen after it is released, because each of them may call
// straight back into this state on the same thread.
struct Hedger::RunState final : std::enable_shared_from_this<RunState> {
  RunState(Hedger& hedger, FetchCallback done, absl::Time start)
      : hedger(hedger), start(start), done(std::move(done)) {}

  // The hedge delay has passed: send the hedge if the primary is still out and it is affordable.
  void OnHedgeTimer(const Attempt& attempt);
  // Attempt 1 (primary) or 2 (hedge) finished with `result`.
  void OnAttemptDone(uint32_t attempt, absl::StatusOr<FetchResult> result);
  // The hedge's attempt refused to start: as if no hedge had been sent.
  void OnHedgeRefused();
  // Run's own token fired.
  void OnRunCancelled();

  Hedger& hedger;
  const absl::Time start;
  // Thread-safe by themselves; requested outside `mu`.
  std::stop_source primary_stop;
  std::stop_source hedge_stop;

  absl::Mutex mu;
  FetchCallback done ABSL_GUARDED_BY(mu);
  bool delivered ABSL_GUARDED_BY(mu) = false;  // `done` was taken to be called
  bool primary_done ABSL_GUARDED_BY(mu) = false;
  bool hedge_sent ABSL_GUARDED_BY(mu) = false;
  bool hedge_done ABSL_GUARDED_BY(mu) = false;
  absl::Status primary_error ABSL_GUARDED_BY(mu);  // set when the primary failed
  TimerId hedge_timer ABSL_GUARDED_BY(mu) = kNoTimer;

  struct CancelFunctor {
    std::weak_ptr<RunState> run;
    void operator()() const noexcept {
      if (auto rs = run.lock()) rs->OnRunCancelled();
    }
  };
  // Emplaced once the RunState is shared (it may run inline then). Last member, so it is
  // unregistered before the fields above are destroyed.
  std::optional<std::stop_callback<CancelFunctor>> on_cancel;
};

Hedger::Hedger(const HedgeOptions& options, TimerQueue& timers)
    : options_(options),
      timers_(timers),
      tokens_(options_.max_tokens),
      window_(options_.percentile > 0 ? static_cast<size_t>(options_.window_size) : 1) {}

void Hedger::Run(const std::stop_token& cancel, Attempt attempt, FetchCallback done) {
  if (cancel.stop_requested()) {
    done(absl::CancelledError("load cancelled before its origin fetch started"));
    return;
  }
  const bool hedging = options_.enabled;
  const absl::Duration delay = hedging ? CurrentDelay() : absl::ZeroDuration();
  auto rs = std::make_shared<RunState>(*this, std::move(done), timers_.clock().Now());
  rs->on_cancel.emplace(cancel, RunState::CancelFunctor{rs});
  {
    absl::MutexLock lock(&rs->mu);
    if (rs->delivered) return;  // cancelled meanwhile; CANCELLED was delivered inline above
  }
  EarnToken();  // also counts the primary fetch
  // The timer needs the attempt after Run() returns.
  auto shared_attempt = std::make_shared<const Attempt>(std::move(attempt));

  const bool started = (*shared_attempt)(
      1, rs->primary_stop.get_token(),
      [rs](absl::StatusOr<FetchResult> result) { rs->OnAttemptDone(1, std::move(result)); });
  if (!started) {
    rs->OnAttemptDone(1, absl::InternalError("the primary origin fetch refused to start"));
  }
  if (!hedging) return;

  // Armed after the primary started, so a hedge can never precede it.
  const TimerId timer =
      timers_.RunAfter(delay, [weak = std::weak_ptr<RunState>(rs), shared_attempt] {
        if (auto run = weak.lock()) run->OnHedgeTimer(*shared_attempt);
      });
  bool still_needed;
  {
    absl::MutexLock lock(&rs->mu);
    still_needed = !rs->delivered && !rs->primary_done;
    if (still_needed) rs->hedge_timer = timer;
  }
  if (!still_needed) timers_.Cancel(timer);  // the primary finished (or Run was cancelled) inline
}

void Hedger::RunState::OnHedgeTimer(const Attempt& attempt) {
  {
    absl::MutexLock lock(&mu);
    hedge_timer = kNoTimer;
    if (delivered || primary_done) return;
    if (!hedger.TrySpendToken()) return;
    hedge_sent = true;
  }
  {
    absl::MutexLock lock(&hedger.mu_);
    ++hedger.stats_.fetches;
    ++hedger.stats_.hedges_sent;
  }
  const bool started =
      attempt(2, hedge_stop.get_token(), [rs = shared_from_this()](absl::StatusOr<FetchResult> r) {
        rs->OnAttemptDone(2, std::move(r));
      });
  if (started) return;
  {
    absl::MutexLock lock(&hedger.mu_);
    --hedger.stats_.fetches;
    --hedger.stats_.hedges_sent;
  }
  hedger.RefundToken();
  OnHedgeRefused();
}

void Hedger::RunState::OnHedgeRefused() {
  FetchCallback deliver;
  absl::Status error;
  {
    absl::MutexLock lock(&mu);
    hedge_sent = false;
    // A primary that answered has delivered; one that failed meanwhile waited for this hedge.
    if (delivered || !primary_done) return;
    delivered = true;
    deliver = std::move(done);
    error = primary_error;
  }
  deliver(std::move(error));
}

void Hedger::RunState::OnAttemptDone(uint32_t attempt, absl::StatusOr<FetchResult> result) {
  const bool is_primary = attempt == 1;
  const absl::Time now = hedger.timers_.clock().Now();
  std::optional<absl::StatusOr<FetchResult>> outcome;  // set once the run is decided
  FetchCallback deliver;
  TimerId timer = kNoTimer;
  std::stop_source* loser = nullptr;
  bool record_latency = false;
  {
    absl::MutexLock lock(&mu);
    // Only the first report of an attempt counts.
    if (is_primary ? primary_done : hedge_done) return;
    if (is_primary) {
      primary_done = true;
      // A primary we cancelled did not run to its own end: its time says nothing of the origin.
      record_latency = !primary_stop.stop_requested();
    } else {
      hedge_done = true;
    }
    if (!delivered) {
      if (IsAnswer(result)) {
        outcome = std::move(result);
        if (is_primary && hedge_sent && !hedge_done) loser = &hedge_stop;
        if (!is_primary && !primary_done) {
          loser = &primary_stop;
          record_latency = true;  // censored: the primary would have taken at least this long
        }
      } else if (is_primary) {
        primary_error = result.status();
        // An error waits for a hedge in flight; with none, it is the result.
        if (!hedge_sent || hedge_done) outcome = primary_error;
      } else if (primary_done) {
        outcome = primary_error;  // both failed: report the primary's error
      }
      // else: the hedge failed first and the primary is still out; wait for it.
      if (outcome.has_value()) {
        delivered = true;
        deliver = std::move(done);
        timer = std::exchange(hedge_timer, kNoTimer);
      }
    }
  }
  if (record_latency) hedger.RecordPrimaryLatency(now - start);
  if (!outcome.has_value()) return;
  if (timer != kNoTimer) hedger.timers_.Cancel(timer);
  // May run the loser's callback inline; it finds the run delivered.
  if (loser != nullptr) loser->request_stop();
  if (!is_primary && IsAnswer(*outcome)) {
    absl::MutexLock lock(&hedger.mu_);
    ++hedger.stats_.hedges_won;
  }
  deliver(*std::move(outcome));
}

void Hedger::RunState::OnRunCancelled() {
  FetchCallback deliver;
  TimerId timer;
  {
    absl::MutexLock lock(&mu);
    if (delivered) return;
    delivered = true;
    deliver = std::move(done);
    timer = std::exchange(hedge_timer, kNoTimer);
  }
  if (timer != kNoTimer) hedger.timers_.Cancel(timer);
  // Either request may run an attempt's callback inline; it finds the run delivered.
  primary_stop.request_stop();
  hedge_stop.request_stop();
  deliver(absl::CancelledError("load cancelled"));
}

absl::Duration Hedger::CurrentDelay() const {
  if (options_.percentile <= 0) return options_.delay;
  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(window_.size()) < options_.min_samples) {
    return options_.adaptive_fallback_delay;
  }
  return std::max(window_.Percentile(options_.percentile), kMinAdaptiveDelay);
}

HedgeStats Hedger::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

double Hedger::tokens() const {
  absl::MutexLock lock(&mu_);
  return tokens_;
}

bool Hedger::TrySpendToken() {
  absl::MutexLock lock(&mu_);
  if (tokens_ < 1 - kTokenEpsilon) return false;
  tokens_ = std::max(0.0, tokens_ - 1);
  return true;
}

void Hedger::RefundToken() {
  absl::MutexLock lock(&mu_);
  tokens_ = std::min(options_.max_tokens, tokens_ + 1);
}

void Hedger::EarnToken() {
  absl::MutexLock lock(&mu_);
  ++stats_.fetches;
  tokens_ = std::min(options_.max_tokens, tokens_ + options_.budget);
}

void Hedger::RecordPrimaryLatency(absl::Duration latency) {
  if (options_.percentile <= 0) return;
  absl::MutexLock lock(&mu_);
  window_.Add(latency);
}

}  // namespace flightcache
