// Striped state for read-mostly hot paths: per-thread stripes so that threads on different cores
// write to different cache lines.
//
// A cache hit that writes a line another core also writes (a mutex word, a shared counter, a
// reader count) pays a cache-line transfer on almost every call once two cores are busy: on the
// 2-core CI machine that alone made two threads slower than one. Striping gives each thread its
// own line to write; readers of the totals (stats) sum the stripes.
//
//   ThisThreadStripe()      the thread's stripe, stable for the thread's life: the lowest one no
//                           live thread owns (the thread then owns it, and updates it with plain
//                           stores instead of locked read-modify-writes), or, with more than
//                           kStripes - 1 threads alive, the last stripe, which they share.
//   StripedCounters<N>      N relaxed int64 counters per stripe; Add() touches only the caller's
//                           stripe, Sum() reads them all (not a snapshot across counters).
//   StripedSharedMutex      a reader-writer lock whose readers touch only their own stripe; see
//                           below.
//
// Thread-safety: every member is thread-safe.
#ifndef FLIGHTCACHE_INTERNAL_STRIPED_H_
#define FLIGHTCACHE_INTERNAL_STRIPED_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace flightcache {

// Enough stripes for the threads of a sidecar (gRPC's callback threads scale with the cores);
// more threads than stripes share stripes, which is correct, only slower.
inline constexpr int kStripes = 16;

// The stripe that threads beyond the first kStripes - 1 alive at once share.
inline constexpr int kSharedStripe = kStripes - 1;

struct ThreadStripe {
  int index;       // in [0, kStripes)
  bool exclusive;  // no other live thread uses this stripe
};

// This thread's stripe. A thread that owns its stripe gives it back when it exits.
ThreadStripe ThisThreadStripe();

template <int N>
class StripedCounters final {
 public:
  void Add(int counter, int64_t n = 1) {
    const ThreadStripe stripe = ThisThreadStripe();
    std::atomic<int64_t>& value = stripes_[stripe.index].values[counter];
    if (stripe.exclusive) {
      // Only this thread writes the cell: a plain load and store, no locked instruction.
      value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
      value.fetch_add(n, std::memory_order_relaxed);
    }
  }

  int64_t Sum(int counter) const {
    int64_t sum = 0;
    for (const Stripe& stripe : stripes_) {
      sum += stripe.values[counter].load(std::memory_order_relaxed);
    }
    return sum;
  }

 private:
  struct alignas(ABSL_CACHELINE_SIZE) Stripe {
    std::array<std::atomic<int64_t>, N> values{};
  };
  std::array<Stripe, kStripes> stripes_;
};

// A reader-writer lock for data that is read far more often than written (a cache shard), in
// the manner of folly's SharedMutex "deferred readers" and the BRAVO lock (Dice & Kogan, 2019):
// a reader announces itself in its own stripe's counter and checks that no writer is present; a
// writer raises its flag and waits until every stripe's counter is zero. Readers never write a
// line shared with readers on other cores, so concurrent hits scale; writers pay a scan of
// kStripes lines and exclude one another with an absl::Mutex. Readers that meet a writer back
// off and block on that mutex, so they do not spin while the writer works; a writer waits for
// readers already inside, whose sections are short and never block.
//
// Not reentrant; a reader must not take the writer lock. Abseil has no such lock (absl::Mutex's
// ReaderLock writes the shared mutex word), hence this small one.
class ABSL_LOCKABLE StripedSharedMutex final {
 public:
  StripedSharedMutex() = default;
  StripedSharedMutex(const StripedSharedMutex&) = delete;
  StripedSharedMutex& operator=(const StripedSharedMutex&) = delete;

  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() {
    std::atomic<int32_t>& readers = stripes_[ThisThreadStripe().index].readers;
    while (true) {
      // seq_cst on both sides (here and in Lock) is the Dekker handshake: either this reader's
      // announcement is seen by the writer's scan, or the writer's flag is seen here.
      readers.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_present_.load(std::memory_order_seq_cst)) return;
      readers.fetch_sub(1, std::memory_order_release);
      WaitForWriter();
    }
  }

  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() {
    const ThreadStripe stripe = ThisThreadStripe();
    std::atomic<int32_t>& readers = stripes_[stripe.index].readers;
    if (stripe.exclusive) {
      // Only this thread writes its count; the release store still publishes the section's
      // reads-before to a writer that sees the count drop.
      readers.store(readers.load(std::memory_order_relaxed) - 1, std::memory_order_release);
    } else {
      readers.fetch_sub(1, std::memory_order_release);
    }
  }

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION();
  void Unlock() ABSL_UNLOCK_FUNCTION();

 private:
  struct alignas(ABSL_CACHELINE_SIZE) Stripe {
    std::atomic<int32_t> readers{0};
  };

  // Blocks until the present writer (if any) has unlocked.
  void WaitForWriter();

  std::array<Stripe, kStripes> stripes_;
  alignas(ABSL_CACHELINE_SIZE) std::atomic<bool> writer_present_{false};
  absl::Mutex writers_;  // held by the writer for its whole section
};

class ABSL_SCOPED_LOCKABLE StripedReaderLock final {
 public:
  explicit StripedReaderLock(StripedSharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~StripedReaderLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  StripedReaderLock(const StripedReaderLock&) = delete;
  StripedReaderLock& operator=(const StripedReaderLock&) = delete;

 private:
  StripedSharedMutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE StripedWriterLock final {
 public:
  explicit StripedWriterLock(StripedSharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~StripedWriterLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  StripedWriterLock(const StripedWriterLock&) = delete;
  StripedWriterLock& operator=(const StripedWriterLock&) = delete;

 private:
  StripedSharedMutex* const mu_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_INTERNAL_STRIPED_H_
