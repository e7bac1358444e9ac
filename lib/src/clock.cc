#include "flightcache/clock.h"

#include <time.h>

#include <chrono>

namespace flightcache {

absl::Time MonotonicClock::Now() const {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

const MonotonicClock& MonotonicClock::Get() {
  static const MonotonicClock* const clock = new MonotonicClock();
  return *clock;
}

absl::Time CoarseClock::Now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return absl::UnixEpoch() + absl::DurationFromTimespec(ts);
}

absl::Duration CoarseClock::Resolution() {
  timespec ts;
  clock_getres(CLOCK_MONOTONIC_COARSE, &ts);
  return absl::DurationFromTimespec(ts);
}

const CoarseClock& CoarseClock::Get() {
  static const CoarseClock* const clock = new CoarseClock();
  return *clock;
}

}  // namespace flightcache
