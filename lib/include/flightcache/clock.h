// Clock: the injected source of time for the core.
//
// Everything in lib/ that needs "now" takes a `const Clock&` so tests can drive time by hand
// (tests/testing/fake_clock.h). The production clocks are monotonic: their absl::Time values
// never jump backwards with wall-clock adjustments, so they are good for deadlines and TTLs but
// are not calendar times.
//
// Thread-safety: Now() is thread-safe for every implementation.
#ifndef FLIGHTCACHE_CLOCK_H_
#define FLIGHTCACHE_CLOCK_H_

#include "absl/time/time.h"

namespace flightcache {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// Monotonic time (std::chrono::steady_clock) expressed as absl::Time.
class MonotonicClock final : public Clock {
 public:
  absl::Time Now() const override;

  // A process-wide instance; never destroyed.
  static const MonotonicClock& Get();
};

// The same monotonic clock as MonotonicClock (CLOCK_MONOTONIC) read at the kernel's tick resolution
// (CLOCK_MONOTONIC_COARSE, typically 1-4 ms): several times cheaper to read. Its values trail
// MonotonicClock's by at most one tick and are comparable with them. Good for TTL checks on the
// cache's hit path, where a few milliseconds do not matter; not for measuring latencies. An entry
// whose expiry is stamped and checked with this clock lives its TTL give or take one tick.
class CoarseClock final : public Clock {
 public:
  absl::Time Now() const override;

  // The tick: how far Now() may trail MonotonicClock's, and so how early or late an expiry is seen.
  static absl::Duration Resolution();

  // A process-wide instance; never destroyed.
  static const CoarseClock& Get();
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_CLOCK_H_
