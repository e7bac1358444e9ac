#include "flightcache/striped.h"

#include <thread>

namespace flightcache {

int ThisThreadStripe() {
  static std::atomic<uint32_t> next_thread{0};
  thread_local const int stripe =
      static_cast<int>(next_thread.fetch_add(1, std::memory_order_relaxed) % kStripes);
  return stripe;
}

void StripedSharedMutex::Lock() {
  writers_.Lock();
  writer_present_.store(true, std::memory_order_seq_cst);
  for (Stripe& stripe : stripes_) {
    // Readers inside finish soon (their sections never block); new ones back off.
    for (int spins = 0; stripe.readers.load(std::memory_order_seq_cst) != 0; ++spins) {
      if (spins >= 64) std::this_thread::yield();  // a reader may have been preempted
    }
  }
}

void StripedSharedMutex::Unlock() {
  writer_present_.store(false, std::memory_order_release);
  writers_.Unlock();
}

void StripedSharedMutex::WaitForWriter() {
  writers_.Lock();
  writers_.Unlock();
}

}  // namespace flightcache
