// LatencyWindow: the last N latencies and a percentile of them.
//
// A ring buffer of the most recent `capacity` samples. Percentile(p) is the nearest-rank
// percentile: the smallest sample with at least p% of the samples at or below it. It costs
// O(size) (a copy and nth_element): callers ask for it per load, not per request.
//
// Users: the hedger's adaptive delay (pN of primary latencies) and FlightCache's estimate of how
// long an origin fetch takes (so a queued load that cannot finish in time does not start one).
//
// Thread-safety: thread-compatible; the owner locks.
//
// Usage:
//   LatencyWindow window(1000);
//   window.Add(absl::Milliseconds(12));
//   if (window.size() >= 20) delay = window.Percentile(95);
#ifndef FLIGHTCACHE_LATENCY_WINDOW_H_
#define FLIGHTCACHE_LATENCY_WINDOW_H_

#include <cstddef>
#include <vector>

#include "absl/time/time.h"

namespace flightcache {

class LatencyWindow final {
 public:
  // REQUIRES: capacity >= 1.
  explicit LatencyWindow(size_t capacity);

  void Add(absl::Duration latency);
  size_t size() const { return samples_.size(); }

  // REQUIRES: size() > 0 and 0 < p <= 100.
  absl::Duration Percentile(double p) const;

 private:
  size_t capacity_;
  std::vector<absl::Duration> samples_;
  size_t next_ = 0;  // where the next sample goes once the ring is full
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_LATENCY_WINDOW_H_
