#include "flightcache/clock.h"

#include <chrono>

namespace flightcache {

absl::Time SystemClock::Now() const {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

const SystemClock& SystemClock::Get() {
  static const SystemClock* const clock = new SystemClock();
  return *clock;
}

}  // namespace flightcache
