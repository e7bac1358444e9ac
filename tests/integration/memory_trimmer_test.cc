// MemoryTrimmer: trims on its interval, and stops promptly however long the interval is.
#include "server/memory_trimmer.h"

#include <atomic>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

TEST(MemoryTrimmerTest, TrimsEveryInterval) {
  std::atomic<int> trims{0};
  {
    MemoryTrimmer trimmer(absl::Milliseconds(1), [&trims] { trims.fetch_add(1); });
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (trims.load() < 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_GE(trims.load(), 3) << "three 1 ms intervals did not pass in 10 s";
}

TEST(MemoryTrimmerTest, StopsAtOnceAndTrimsNothingBeforeItsInterval) {
  std::atomic<int> trims{0};
  const absl::Time start = absl::Now();
  {
    MemoryTrimmer trimmer(absl::Hours(1), [&trims] { trims.fetch_add(1); });
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(trims.load(), 0);
}

TEST(MemoryTrimmerTest, TheRealTrimRuns) {
  // malloc_trim(0) on this process's heap: must not crash or hang.
  TrimMallocHeap();
}

}  // namespace
}  // namespace flightcache
