// Hedger: send a second fetch when the first is slow, within a budget.
//
// Run() starts attempt 1 at once. If it has not answered after the hedge delay — fixed, or the
// pN of a sliding window of recent primary latencies — attempt 2 is sent, but only if the token
// bucket has a whole token and the attempt can start at once (the caller's attempt refuses when it
// has no room for another origin call, e.g. no free concurrency permit). The first *answer*
// (a value or NOT_FOUND) wins and the other attempt is cancelled. An error from one attempt waits
// for the other; if both fail, the primary's error is reported (no error is swallowed). Cancelling
// the run's token cancels both attempts.
//
// The latency window sees every primary that ran to its end, and a primary beaten by its hedge
// as the time until it was beaten (a censored sample: it would have taken at least that long).
// Leaving beaten primaries out would drop exactly the slow tail the percentile must see, and the
// delay would drift down until far more than (100 - N)% of loads were hedged.
//
// Token bucket (as gRPC retry throttling): holds at most `max_tokens` (10), starts full; every
// primary fetch adds `budget` (0.05); a hedge spends 1. So hedges stay at ~5% of fetches in steady
// state, after an initial burst of up to 10.
//
// Thread-safety: thread-safe; one Hedger serves every load. `done` runs exactly once, on the
// thread that delivered the deciding result (or ran the cancellation).
//
// Lifetime: the Hedger and the timer queue must outlive every Run(). The Hedger knows nothing of
// permits: OriginFetcher (lib/src/origin_fetcher.h) runs it with attempts that hold their own.
#ifndef FLIGHTCACHE_HEDGER_H_
#define FLIGHTCACHE_HEDGER_H_

#include <cstdint>
#include <functional>
#include <stop_token>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/latency_window.h"
#include "flightcache/origin.h"
#include "flightcache/timer_queue.h"

namespace flightcache {

struct HedgeOptions {
  bool enabled = false;
  // Fixed delay; used when `percentile` is 0.
  absl::Duration delay = absl::Milliseconds(20);
  // If > 0 (e.g. 95), the delay is this percentile of recent primary latencies.
  double percentile = 0;
  // Delay used while the window has fewer than `min_samples` latencies.
  absl::Duration adaptive_fallback_delay = absl::Milliseconds(20);
  int min_samples = 20;
  int window_size = 1000;
  double budget = 0.05;    // tokens earned per primary fetch
  double max_tokens = 10;  // bucket size, and its starting level

  absl::Status Validate() const;
};

// Counters for the spec's Stats and the metrics.
struct HedgeStats {
  int64_t fetches = 0;  // origin fetches sent: primaries + hedges
  int64_t hedges_sent = 0;
  int64_t hedges_won = 0;  // the hedge's answer was the one delivered
};

class Hedger final {
 public:
  // One fetch attempt: start it and return true, then stop it when `cancel` fires and call `done`
  // exactly once; or return false without calling `done` when it cannot start now (only a hedge
  // may be refused: then no hedge is sent and no token is spent). Must not throw.
  using Attempt = std::function<bool(uint32_t attempt, std::stop_token cancel, FetchCallback done)>;

  Hedger(const HedgeOptions& options, TimerQueue& timers);
  Hedger(const Hedger&) = delete;
  Hedger& operator=(const Hedger&) = delete;

  // REQUIRES: `attempt` starts attempt 1 (returns true for it).
  void Run(const std::stop_token& cancel, Attempt attempt, FetchCallback done);

  // The delay a hedge would wait now.
  absl::Duration CurrentDelay() const;
  HedgeStats stats() const;
  double tokens() const;

 private:
  // Implementation is private to hedger.cc.
  struct RunState;
  bool TrySpendToken();
  void RefundToken();
  void EarnToken();
  void RecordPrimaryLatency(absl::Duration latency);

  const HedgeOptions options_;
  TimerQueue& timers_;

  mutable absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  LatencyWindow window_ ABSL_GUARDED_BY(mu_);  // recent primary latencies
  HedgeStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_HEDGER_H_
