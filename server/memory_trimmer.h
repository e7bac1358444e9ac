// MemoryTrimmer: hands freed heap memory back to the kernel after the process grew.
//
// glibc's malloc keeps freed memory in its arenas: after a burst (an HTTP/2 rapid-reset flood
// allocates hundreds of MiB of gRPC call state on the server's threads, then frees it) the
// process's RSS stays at the peak for good, because the free chunks are spread over many arenas
// and sit below live ones. malloc_trim(0) returns every free page of every arena.
//
// A trim is not free: it walks every free chunk while holding that arena's lock (bench/
// trim_bench.cc: ~15-20 ms for 1,000,000 scattered free 128-byte chunks, every time, as long as
// they stay free), so trimming on a fixed timer would stall allocations in a steady server for
// nothing. TrimPolicy looks at RSS every interval and trims only while it is elevated, 32 MiB or
// more above where it settled: at once while RSS grows or a trim released memory, and after an
// unproductive trim (the burst's memory still in use) again after 1, 2, 4, ... 64 intervals.
// RSS that stays elevated through 64 intervals is taken as the new normal (a cache that filled
// up) and no longer trimmed. A process whose RSS does not grow costs one statm read per interval.
//
// Going idle also trims, once: when the process worked (its activity count moved) and then did
// nothing for a whole interval while RSS is above the baseline by 4 MiB or more. A busy stretch
// leaves memory in glibc's arenas that is often less than 32 MiB (the soak saw +9 to +26%, 3 to
// 9 MiB, after the load stopped); an idle process has nobody to stall, so that trim is free to
// callers, and an idle sidecar then holds what it uses, not the high-water mark of its busiest
// moment. Activity that never stops never triggers it.
//
// Thread-safety: TrimPolicy is not synchronised (the trimmer's thread owns it). MemoryTrimmer
// runs on its own thread; construct and destroy it from one thread. Destruction wakes the thread
// and joins it: it waits at most for one trim in progress.
//
// Usage:
//   MemoryTrimmer trimmer(absl::Seconds(5));  // looks every 5 s until destroyed
#ifndef FLIGHTCACHE_SERVER_MEMORY_TRIMMER_H_
#define FLIGHTCACHE_SERVER_MEMORY_TRIMMER_H_

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace flightcache {

// malloc_trim(0): returns free heap pages of every malloc arena to the kernel.
void TrimMallocHeap();

// This process's resident set in bytes (/proc/self/statm), or -1.
int64_t ResidentBytes();

// Decides, once per interval, whether a trim is worth its cost (see above).
class TrimPolicy final {
 public:
  static constexpr int64_t kElevatedBytes = int64_t{32} << 20;
  static constexpr int64_t kChangeBytes = int64_t{4} << 20;
  static constexpr int kMaxBackoffIntervals = 64;

  static constexpr int64_t kNoActivity = -1;

  // `rss`: resident bytes now (-1: unknown, never trims). `activity`: a count that grows while the
  // process works (requests served), or kNoActivity to never trim for going idle. The first look
  // sets the baseline. True: trim now, then report with Trimmed().
  bool ShouldTrim(int64_t rss, int64_t activity = kNoActivity);
  void Trimmed(int64_t rss_before, int64_t rss_after);

 private:
  int64_t baseline_ = -1;  // where RSS settled: the first look, or a level accepted as normal
  int64_t last_rss_ = -1;  // RSS at the last look (after the last trim)
  int backoff_ = 0;        // intervals skipped after the last trim: 0, 1, 2, 4 ... 64
  int wait_ = 0;           // intervals still to skip before the next trim
  int64_t last_activity_ = kNoActivity;  // the activity count at the last look
  bool worked_ = false;  // the activity count moved since the last idle trim (or the start)
};

class MemoryTrimmer final {
 public:
  // Reads `resident_bytes` now (the baseline), then every `interval` until destroyed, and
  // calls `trim` when the policy says so. `activity` (may be empty: no idle trims) is read at
  // each look on the trimmer's thread: it must be thread-safe and outlive the trimmer.
  explicit MemoryTrimmer(absl::Duration interval, std::function<void()> trim = TrimMallocHeap,
                         std::function<int64_t()> resident_bytes = ResidentBytes,
                         std::function<int64_t()> activity = nullptr);
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

 private:
  int64_t Activity() const;

  const absl::Duration interval_;
  const std::function<void()> trim_;
  const std::function<int64_t()> resident_bytes_;
  const std::function<int64_t()> activity_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_MEMORY_TRIMMER_H_
