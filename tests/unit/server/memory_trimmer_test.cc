// MemoryTrimmer and its TrimPolicy: trims while RSS is elevated (at once while it grows or trims
// release memory, backing off otherwise), leaves a steady process alone, and stops promptly.
#include "server/memory_trimmer.h"

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

// Polls `trims` every millisecond until it is above 0 or `limit` passed (the caller asserts).
void WaitForATrim(const std::atomic<int>& trims, absl::Duration limit) {
  for (const absl::Time deadline = absl::Now() + limit;
       trims.load() == 0 && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
}

constexpr int64_t kMiB = int64_t{1} << 20;

// One look of the policy at `rss`; if it trims, the trim leaves `after`. Returns whether it did.
bool Look(TrimPolicy& policy, int64_t rss, int64_t after) {
  if (!policy.ShouldTrim(rss)) return false;
  policy.Trimmed(rss, after);
  return true;
}

TEST(TrimPolicyTest, ASteadyProcessIsNeverTrimmed) {
  TrimPolicy policy;
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(Look(policy, 300 * kMiB + i * kMiB / 10, 0)) << i;
}

TEST(TrimPolicyTest, GrowthBelow32MiBIsNeverTrimmed) {
  TrimPolicy policy;
  for (int i = 0; i < 32; ++i) EXPECT_FALSE(Look(policy, 100 * kMiB + i * kMiB, 0)) << i;
}

TEST(TrimPolicyTest, ABurstAlreadyFreedIsHandedBackByOneTrim) {
  TrimPolicy policy;
  EXPECT_FALSE(Look(policy, 18 * kMiB, 18 * kMiB));  // first look: the baseline
  EXPECT_TRUE(Look(policy, 400 * kMiB, 19 * kMiB));  // elevated: trimmed back
  EXPECT_FALSE(Look(policy, 19 * kMiB, 19 * kMiB));  // settled again
  EXPECT_FALSE(Look(policy, 20 * kMiB, 20 * kMiB));
}

// A growth trigger alone would miss this: the burst's memory is still in use at the first trims,
// RSS stops growing, and the memory is freed only later.
TEST(TrimPolicyTest, ABurstFreedAfterItStoppedGrowingIsHandedBackToo) {
  TrimPolicy policy;
  EXPECT_FALSE(Look(policy, 18 * kMiB, 18 * kMiB));
  EXPECT_TRUE(Look(policy, 500 * kMiB, 500 * kMiB));   // growing; all live: nothing released
  EXPECT_TRUE(Look(policy, 930 * kMiB, 875 * kMiB));   // still growing: trims again
  EXPECT_TRUE(Look(policy, 875 * kMiB, 875 * kMiB));   // released some: again; now nothing
  EXPECT_FALSE(Look(policy, 875 * kMiB, 875 * kMiB));  // backs off one interval
  EXPECT_TRUE(Look(policy, 875 * kMiB, 20 * kMiB));    // freed meanwhile: handed back
  EXPECT_FALSE(Look(policy, 20 * kMiB, 20 * kMiB));
}

// A cache that fills up raises RSS for good: trims back off (after 1, 2, 4 ... 64 intervals),
// then the new level is accepted and trimming stops.
TEST(TrimPolicyTest, ALastingLevelIsTrimmedLessAndLessThenAccepted) {
  TrimPolicy policy;
  EXPECT_FALSE(Look(policy, 18 * kMiB, 18 * kMiB));
  std::vector<int> trimmed_at;
  for (int look = 1; look <= 300; ++look) {
    if (Look(policy, 300 * kMiB, 300 * kMiB)) trimmed_at.push_back(look);
  }
  EXPECT_EQ(trimmed_at, (std::vector<int>{1, 3, 6, 11, 20, 37, 70, 135}));
}

TEST(TrimPolicyTest, UnknownResidentSizeNeverTrims) {
  TrimPolicy policy;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(Look(policy, -1, -1));
}

// After work stops, the first whole idle interval hands back what the busy stretch left in
// glibc's arenas, even far below the 32 MiB that trims a busy process.
TEST(TrimPolicyTest, GoingIdleAfterWorkTrimsOnce) {
  TrimPolicy policy;
  EXPECT_FALSE(Look(policy, 18 * kMiB, 0));  // the baseline
  EXPECT_FALSE(policy.ShouldTrim(26 * kMiB, 100)) << "busy, and only 8 MiB above the baseline";
  EXPECT_FALSE(policy.ShouldTrim(27 * kMiB, 250));
  ASSERT_TRUE(policy.ShouldTrim(27 * kMiB, 250)) << "idle for a whole interval after work";
  policy.Trimmed(27 * kMiB, 20 * kMiB);
  EXPECT_FALSE(policy.ShouldTrim(20 * kMiB, 250)) << "once per idle stretch";
  EXPECT_FALSE(policy.ShouldTrim(27 * kMiB, 250)) << "still the same idle stretch";
  EXPECT_FALSE(policy.ShouldTrim(27 * kMiB, 300));  // works again
  EXPECT_TRUE(policy.ShouldTrim(27 * kMiB, 300)) << "the next idle stretch";
}

TEST(TrimPolicyTest, IdleWithoutWorkNeverTrims) {
  TrimPolicy policy;
  EXPECT_FALSE(policy.ShouldTrim(18 * kMiB, 7));
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(policy.ShouldTrim(30 * kMiB, 7)) << i;
}

TEST(TrimPolicyTest, IdleNearTheBaselineIsNotTrimmed) {
  TrimPolicy policy;
  EXPECT_FALSE(policy.ShouldTrim(18 * kMiB, 0));
  EXPECT_FALSE(policy.ShouldTrim(19 * kMiB, 500));
  EXPECT_FALSE(policy.ShouldTrim(19 * kMiB, 500)) << "1 MiB above the baseline: nothing to gain";
}

TEST(TrimPolicyTest, WorkThatNeverStopsIsNotTrimmedForIdleness) {
  TrimPolicy policy;
  EXPECT_FALSE(policy.ShouldTrim(18 * kMiB, 0));
  for (int i = 1; i <= 20; ++i) EXPECT_FALSE(policy.ShouldTrim(40 * kMiB, i * 1000)) << i;
}

TEST(MemoryTrimmerTest, TrimsWhenTheProcessGoesIdle) {
  std::atomic<int64_t> rss{20 * kMiB};
  std::atomic<int64_t> requests{0};
  std::atomic<int> trims{0};
  {
    MemoryTrimmer trimmer(
        absl::Milliseconds(2), [&] { trims.fetch_add(1); }, [&] { return rss.load(); },
        [&] { return requests.load(); });
    rss = 28 * kMiB;  // a busy stretch: 8 MiB more, far below the 32 MiB that trims while busy
    for (int i = 0; i < 20; ++i) {
      requests.fetch_add(10);
      absl::SleepFor(absl::Milliseconds(1));
    }
    WaitForATrim(trims, absl::Seconds(10));  // the requests stopped
  }
  EXPECT_GE(trims.load(), 1) << "no trim within 10 s of going idle";
}

TEST(MemoryTrimmerTest, TrimsOnItsThreadWhenTheResidentSizeGrew) {
  std::atomic<int64_t> rss{100 * kMiB};
  std::atomic<int> trims{0};
  {
    MemoryTrimmer trimmer(
        absl::Milliseconds(1), [&] { trims.fetch_add(1); }, [&] { return rss.load(); });
    absl::SleepFor(absl::Milliseconds(20));
    EXPECT_EQ(trims.load(), 0) << "trimmed a steady process";
    rss = 500 * kMiB;
    WaitForATrim(trims, absl::Seconds(10));
  }
  EXPECT_GE(trims.load(), 1) << "no trim within 10 s of 400 MiB of growth";
}

// A burst right after start-up, before the first interval ended, is measured from the size at
// construction, not from the burst's peak.
TEST(MemoryTrimmerTest, GrowthBeforeTheFirstIntervalCountsToo) {
  std::atomic<int64_t> rss{100 * kMiB};
  std::atomic<int> trims{0};
  {
    MemoryTrimmer trimmer(
        absl::Milliseconds(50), [&] { trims.fetch_add(1); }, [&] { return rss.load(); });
    rss = 500 * kMiB;
    WaitForATrim(trims, absl::Seconds(10));
  }
  EXPECT_GE(trims.load(), 1) << "the growth before the first look was taken as the baseline";
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

TEST(MemoryTrimmerTest, TheRealTrimAndResidentSizeWork) {
  EXPECT_GT(ResidentBytes(), 0);
  TrimMallocHeap();  // malloc_trim(0) on this process's heap: must not crash or hang
}

}  // namespace
}  // namespace flightcache
