#include "server/memory_trimmer.h"

#include <malloc.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <utility>

namespace flightcache {

void TrimMallocHeap() { malloc_trim(0); }

int64_t ResidentBytes() {
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) return -1;
  int64_t size = 0, resident = 0;
  const bool read = std::fscanf(statm, "%" SCNd64 " %" SCNd64, &size, &resident) == 2;
  std::fclose(statm);
  return read ? static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE) : -1;
}

bool TrimPolicy::ShouldTrim(int64_t rss, int64_t activity) {
  if (rss < 0) return false;
  const bool idle = activity != kNoActivity && activity == last_activity_;
  if (activity != last_activity_ && last_activity_ != kNoActivity) worked_ = true;
  last_activity_ = activity;
  if (baseline_ < 0) {
    baseline_ = last_rss_ = rss;
    return false;
  }
  if (idle && worked_ && rss - baseline_ >= kChangeBytes) {
    worked_ = false;  // once per idle stretch
    last_rss_ = rss;
    return true;
  }
  if (rss - last_rss_ >= kChangeBytes) backoff_ = wait_ = 0;  // growing: trim at once
  last_rss_ = rss;
  if (rss - baseline_ < kElevatedBytes) {
    backoff_ = wait_ = 0;
    return false;
  }
  if (wait_ > 0) {
    --wait_;
    return false;
  }
  return true;
}

void TrimPolicy::Trimmed(int64_t rss_before, int64_t rss_after) {
  last_rss_ = rss_after;
  if (rss_before - rss_after >= kChangeBytes) {
    backoff_ = 0;  // it released memory: there may be more next interval
  } else if (backoff_ == kMaxBackoffIntervals) {
    baseline_ = rss_after;  // elevated all this while: the new normal
    backoff_ = 0;
  } else {
    backoff_ = backoff_ == 0 ? 1 : 2 * backoff_;
  }
  wait_ = backoff_;
}

MemoryTrimmer::MemoryTrimmer(absl::Duration interval, std::function<void()> trim,
                             std::function<int64_t()> resident_bytes,
                             std::function<int64_t()> activity)
    : interval_(interval),
      trim_(std::move(trim)),
      resident_bytes_(std::move(resident_bytes)),
      activity_(std::move(activity)) {
  // The first look, now: growth from here on counts, even before the first interval ends.
  TrimPolicy policy;
  policy.ShouldTrim(resident_bytes_(), Activity());
  thread_ = std::thread([this, policy]() mutable {
    while (!stop_.WaitForNotificationWithTimeout(interval_)) {
      const int64_t before = resident_bytes_();
      if (!policy.ShouldTrim(before, Activity())) continue;
      trim_();
      policy.Trimmed(before, resident_bytes_());
    }
  });
}

int64_t MemoryTrimmer::Activity() const {
  return activity_ ? activity_() : TrimPolicy::kNoActivity;
}

MemoryTrimmer::~MemoryTrimmer() {
  stop_.Notify();
  thread_.join();
}

}  // namespace flightcache
