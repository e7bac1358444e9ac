// AdaptiveLimit: finds how many fetches the origin can take at once from the latency of its
// answers, so that --max-concurrent-loads need not be guessed.
//
// The algorithm is a latency gradient, in the manner of Netflix concurrency-limits' Gradient2, with
// the unloaded latency measured as Envoy's adaptive concurrency filter does. Answers are taken in
// batches (max(10, limit) answers each). At the end of a batch:
//   baseline = the origin's latency unloaded: the median of the last probe batch, or a lower
//              batch median seen since;
//   gradient = clamp(1.05 * baseline / this batch's median, 0.5, 1)   (1: no queueing seen);
//   target   = limit * gradient + growth, growth = max(1, limit / 10) while the gradient is 1
//              (probe upwards fast), 1 once latency rises (probe gently near the knee);
//   limit    = limit moved 20% towards a higher target, 50% towards a lower one.
// A batch that saw an overload answer (DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) has a gradient of at
// most 0.9; a batch in which fewer than limit/2 fetches were ever in flight does not raise the
// limit (the origin was not what held throughput back, so its latency says nothing about more).
//
// Every 200 batches a probe batch runs at min_limit (answers of calls that started above it are
// left out) and its median becomes the baseline. Without probes the baseline could only fall: a
// baseline that rose with the batches it judges would ratchet the limit upwards, since every
// batch just above the knee would in time look unloaded.
//
// Why a gradient and not AIMD: AIMD needs a latency threshold or errors to back off, and an origin
// that slows down past its knee gives neither until callers time out. The gradient backs off as
// soon as latency rises above the origin's own unloaded latency, which it measures itself. Why the
// median and not the minimum or mean per batch: the minimum hides queueing, the mean follows one
// slow tail. Why a tolerance of 5% and asymmetric smoothing: against an origin whose throughput
// falls past K in flight, the limit spends most batches at K and a few probing K+1 (a simulation
// of such an origin: 95-98% of the best fixed limit's throughput), while an origin whose latency
// only rises (throughput flat) settles one or two above K.
//
// Thread-safety: thread-compatible; the owner locks.
//
// Usage:
//   AdaptiveLimit limit({.min_limit = 4, .max_limit = 256});
//   int64_t k = limit.OnAnswer(latency, in_flight);   // on each answered origin call
#ifndef FLIGHTCACHE_ADAPTIVE_LIMIT_H_
#define FLIGHTCACHE_ADAPTIVE_LIMIT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace flightcache {

struct AdaptiveLimitOptions {
  int64_t min_limit = 4;
  int64_t max_limit = 256;

  absl::Status Validate() const;  // 1 <= min_limit <= max_limit <= 1,000,000
};

class AdaptiveLimit final {
 public:
  // REQUIRES: options.Validate().ok(). Starts at min_limit.
  explicit AdaptiveLimit(const AdaptiveLimitOptions& options);

  // One origin call answered (a value or NOT_FOUND) after `latency`, with `in_flight` origin calls
  // in flight as it ended (itself included). Returns the limit to use from now on.
  int64_t OnAnswer(absl::Duration latency, int64_t in_flight);
  // One origin call that ended with an overload error (DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED).
  int64_t OnOverload(int64_t in_flight);

  int64_t limit() const { return probing_ ? options_.min_limit : static_cast<int64_t>(limit_); }
  // The origin's unloaded latency as measured (zero before the first batch).
  absl::Duration baseline() const { return baseline_; }
  int64_t batches() const { return batches_; }
  bool probing() const { return probing_; }  // measuring the baseline at min_limit

 private:
  void Sample(int64_t in_flight);
  void EndBatch();
  void EndProbe();
  absl::Duration BatchMedian();

  const AdaptiveLimitOptions options_;
  double limit_;
  std::vector<absl::Duration> batch_;  // answers' latencies in this batch
  int64_t batch_samples_ = 0;          // answers and overloads in this batch
  int64_t batch_max_in_flight_ = 0;
  bool batch_overloaded_ = false;
  absl::Duration baseline_ = absl::ZeroDuration();
  int64_t batches_ = 0;
  int64_t batches_since_probe_ = 0;
  bool probing_ = false;  // this batch measures the baseline at min_limit
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_ADAPTIVE_LIMIT_H_
