// MemoryTrimmer: hands freed heap memory back to the kernel every few seconds.
//
// glibc's malloc keeps freed memory in its arenas: after a burst (an HTTP/2 rapid-reset flood
// allocates hundreds of MiB of gRPC call state on the server's threads, then frees it) the
// process's RSS stays at the peak for good, because the free chunks are spread over many arenas
// and sit below live ones. malloc_trim(0) returns every free page of every arena. It takes each
// arena's lock while it walks it, so it runs on a timer rather than after every free.
//
// Thread-safety: the trim runs on the trimmer's own thread; construct and destroy from one
// thread. Destruction wakes the thread and joins it: it waits at most for one trim in progress.
//
// Usage:
//   MemoryTrimmer trimmer(absl::Seconds(5));  // trims until destroyed
#ifndef FLIGHTCACHE_SERVER_MEMORY_TRIMMER_H_
#define FLIGHTCACHE_SERVER_MEMORY_TRIMMER_H_

#include <functional>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace flightcache {

// malloc_trim(0): returns free heap pages of every malloc arena to the kernel.
void TrimMallocHeap();

class MemoryTrimmer final {
 public:
  // Calls `trim` every `interval` (first after one interval) until destroyed.
  explicit MemoryTrimmer(absl::Duration interval, std::function<void()> trim = TrimMallocHeap);
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

 private:
  const absl::Duration interval_;
  const std::function<void()> trim_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_MEMORY_TRIMMER_H_
