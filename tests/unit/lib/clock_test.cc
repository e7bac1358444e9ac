#include "flightcache/clock.h"

#include "gtest/gtest.h"

namespace flightcache {
namespace {

TEST(ClockTest, MonotonicClockNeverGoesBackwards) {
  absl::Time last = MonotonicClock::Get().Now();
  for (int i = 0; i < 10000; ++i) {
    const absl::Time now = MonotonicClock::Get().Now();
    ASSERT_GE(now, last);
    last = now;
  }
}

TEST(ClockTest, CoarseClockTrailsMonotonicClockByAtMostATick) {
  for (int i = 0; i < 1000; ++i) {
    const absl::Time coarse = CoarseClock::Get().Now();
    const absl::Time fine = MonotonicClock::Get().Now();
    // Same monotonic clock: coarse is never ahead, and behind by at most one kernel tick (<= 10
    // ms at HZ=100; generous for a noisy machine).
    ASSERT_LE(coarse, fine + absl::Microseconds(1));
    ASSERT_LT(fine - coarse, absl::Milliseconds(50));
  }
}

TEST(ClockTest, CoarseClockResolutionIsAKernelTick) {
  // HZ is 100 to 1000 on Linux: a tick of 1 to 10 ms.
  EXPECT_GE(CoarseClock::Resolution(), absl::Milliseconds(1));
  EXPECT_LE(CoarseClock::Resolution(), absl::Milliseconds(10));
}

}  // namespace
}  // namespace flightcache
