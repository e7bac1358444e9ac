#include "server/memory_trimmer.h"

#include <malloc.h>

#include <utility>

namespace flightcache {

void TrimMallocHeap() { malloc_trim(0); }

MemoryTrimmer::MemoryTrimmer(absl::Duration interval, std::function<void()> trim)
    : interval_(interval), trim_(std::move(trim)) {
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(interval_)) trim_();
  });
}

MemoryTrimmer::~MemoryTrimmer() {
  stop_.Notify();
  thread_.join();
}

}  // namespace flightcache
