#include "internal/striped.h"

#include <bit>
#include <thread>

#include "absl/base/const_init.h"

namespace flightcache {
namespace {

ABSL_CONST_INIT absl::Mutex stripes_mu(absl::kConstInit);
// Bit i set: a live thread owns stripe i (i < kSharedStripe).
uint32_t owned_stripes ABSL_GUARDED_BY(stripes_mu) = 0;

// Trivially destructible, so it stays readable during the thread's other thread_local
// destructors (which may still count something): they then use the shared stripe.
thread_local ThreadStripe this_thread_stripe = {-1, false};

ThreadStripe TakeStripe() {
  absl::MutexLock lock(&stripes_mu);
  constexpr uint32_t kOwnable = (uint32_t{1} << kSharedStripe) - 1;
  const uint32_t free = ~owned_stripes & kOwnable;
  if (free == 0) return {kSharedStripe, false};
  const int index = std::countr_zero(free);
  owned_stripes |= uint32_t{1} << index;
  return {index, true};
}

// Gives an owned stripe back when its thread exits. The mutex orders the old owner's last plain
// stores before the next owner's first loads.
struct StripeReturner {
  ~StripeReturner() {
    if (!this_thread_stripe.exclusive) return;
    absl::MutexLock lock(&stripes_mu);
    owned_stripes &= ~(uint32_t{1} << this_thread_stripe.index);
    this_thread_stripe = {kSharedStripe, false};
  }
};

}  // namespace

ThreadStripe ThisThreadStripe() {
  if (ABSL_PREDICT_FALSE(this_thread_stripe.index < 0)) {
    this_thread_stripe = TakeStripe();
    thread_local StripeReturner returner;
    (void)returner;
  }
  return this_thread_stripe;
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
