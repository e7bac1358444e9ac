#include "flightcache/clock.h"

#include <time.h>

#include <chrono>

namespace flightcache {

absl::Time SystemClock::Now() const {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

const SystemClock& SystemClock::Get() {
  static const SystemClock* const clock = new SystemClock();
  return *clock;
}

absl::Time CoarseClock::Now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return absl::UnixEpoch() + absl::DurationFromTimespec(ts);
}

const CoarseClock& CoarseClock::Get() {
  static const CoarseClock* const clock = new CoarseClock();
  return *clock;
}

}  // namespace flightcache
