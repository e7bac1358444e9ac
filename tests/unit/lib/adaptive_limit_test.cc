#include "flightcache/adaptive_limit.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

// An origin that answers in 20 ms with up to `knee` fetches in flight and slows down in
// proportion beyond it: 20 ms x (1 + slope x (n - knee) / knee), as the simulated origin does.
struct KneeOrigin {
  int64_t knee;
  double slope;

  absl::Duration Latency(int64_t in_flight) const {
    const double over = static_cast<double>(std::max<int64_t>(0, in_flight - knee));
    return absl::Milliseconds(20) * (1 + slope * over / static_cast<double>(knee));
  }
  double Throughput(int64_t in_flight) const {  // answers per second
    return static_cast<double>(in_flight) / absl::ToDoubleSeconds(Latency(in_flight));
  }
};

struct SaturatedRun {
  std::vector<int64_t> limits;  // after each batch, probes left out
  double throughput = 0;        // answers per second of simulated time, probes included
};

// Keeps `limit` fetches in flight (demand always exceeds it) for `batches` batches. With c in
// flight, an answer comes every latency(c) / c.
SaturatedRun Saturate(AdaptiveLimit& limit, const KneeOrigin& origin, int batches,
                      double slowdown = 1.0) {
  SaturatedRun run;
  absl::Duration elapsed;
  int64_t answers = 0;
  const int64_t end = limit.batches() + batches;
  while (limit.batches() < end) {
    const int64_t batch = limit.batches();
    const int64_t in_flight = limit.limit();
    const absl::Duration latency = slowdown * origin.Latency(in_flight);
    elapsed += latency / in_flight;
    ++answers;
    limit.OnAnswer(latency, in_flight);
    if (limit.batches() != batch && !limit.probing()) run.limits.push_back(limit.limit());
  }
  run.throughput = static_cast<double>(answers) / absl::ToDoubleSeconds(elapsed);
  return run;
}

struct KneeCase {
  int64_t knee;
  double slope;
};

class AdaptiveLimitKneeTest : public ::testing::TestWithParam<KneeCase> {};

// The promise: settles near the knee without being told it. Against a thrashing origin
// (slope 4: throughput falls past the knee) the throughput kept is at least 90% of the best fixed
// limit's; against one that only queues (slope 1) the limit stays within a few of the knee.
TEST_P(AdaptiveLimitKneeTest, SettlesNearTheKneeAndKeepsTheThroughput) {
  const KneeOrigin origin{GetParam().knee, GetParam().slope};
  AdaptiveLimit limit({.min_limit = 4, .max_limit = 256});
  Saturate(limit, origin, 400);  // settle
  const SaturatedRun settled = Saturate(limit, origin, 600);
  const auto [lo, hi] = std::minmax_element(settled.limits.begin(), settled.limits.end());
  const int64_t k = origin.knee;
  EXPECT_GE(*lo, k - std::max<int64_t>(1, k / 20)) << "settled below the knee " << k;
  EXPECT_LE(*hi, k + std::max<int64_t>(2, k / 10)) << "settled above the knee " << k;
  const double best = origin.Throughput(k);
  EXPECT_GE(settled.throughput, 0.9 * best);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(limit.baseline()), 20, 0.01);
}

INSTANTIATE_TEST_SUITE_P(Knees, AdaptiveLimitKneeTest,
                         ::testing::Values(KneeCase{8, 4}, KneeCase{8, 1}, KneeCase{100, 4},
                                           KneeCase{100, 1}),
                         [](const ::testing::TestParamInfo<KneeCase>& info) {
                           return "knee" + std::to_string(info.param.knee) + "_slope" +
                                  std::to_string(static_cast<int>(info.param.slope));
                         });

TEST(AdaptiveLimitTest, StartsAtTheMinimumAndNeverLeavesTheRange) {
  AdaptiveLimit limit({.min_limit = 3, .max_limit = 40});
  EXPECT_EQ(limit.limit(), 3);
  // An origin with no knee at all: the limit climbs to MAX and stays there.
  const SaturatedRun up = Saturate(limit, {.knee = 1'000'000, .slope = 1}, 300);
  EXPECT_EQ(*std::max_element(up.limits.begin(), up.limits.end()), 40);
  EXPECT_EQ(up.limits.back(), 40);
  // One that is far slower above one fetch in flight: down to MIN and no lower.
  const SaturatedRun down = Saturate(limit, {.knee = 1, .slope = 1'000}, 300);
  EXPECT_EQ(*std::min_element(down.limits.begin(), down.limits.end()), 3);
  EXPECT_EQ(down.limits.back(), 3);
}

TEST(AdaptiveLimitTest, ClimbsByAShareOfItselfWhileLatencyStaysFlat) {
  AdaptiveLimit limit({.min_limit = 4, .max_limit = 256});
  // 2% a batch (10%, smoothed) while nothing queues: from 4 to 256 in about 200 batches, where
  // one fetch more per batch would take over a thousand.
  const SaturatedRun up = Saturate(limit, {.knee = 1'000'000, .slope = 1}, 250);
  EXPECT_EQ(up.limits.back(), 256);
}

TEST(AdaptiveLimitTest, FewFetchesInFlightDoNotRaiseTheLimit) {
  AdaptiveLimit limit({.min_limit = 4, .max_limit = 256});
  for (int i = 0; i < 10'000; ++i) limit.OnAnswer(absl::Milliseconds(20), /*in_flight=*/2);
  EXPECT_LE(limit.limit(), 5) << "latency at 2 in flight says nothing about 50";
  EXPECT_GT(limit.batches(), 100);
}

TEST(AdaptiveLimitTest, OverloadAnswersLowerTheLimit) {
  AdaptiveLimit limit({.min_limit = 4, .max_limit = 256});
  Saturate(limit, {.knee = 1'000'000, .slope = 1}, 250);
  ASSERT_EQ(limit.limit(), 256);
  // The answers still come at the unloaded latency, but every tenth call times out or is
  // refused: each batch backs off.
  const int64_t batches = limit.batches();
  for (int i = 0; limit.batches() < batches + 20; ++i) {
    if (i % 10 == 0) {
      limit.OnOverload(limit.limit());
    } else {
      limit.OnAnswer(absl::Milliseconds(20), limit.limit());
    }
  }
  EXPECT_LT(limit.limit(), 256 * 0.6);
  EXPECT_GE(limit.limit(), 4);
  // Nothing but overloads (no latency to judge by): backs off just the same.
  const int64_t before = limit.limit();
  const int64_t now = limit.batches();
  while (limit.batches() < now + 5) limit.OnOverload(limit.limit());
  EXPECT_LT(limit.limit(), before);
}

TEST(AdaptiveLimitTest, TheBaselineFollowsAnOriginThatGotSlowerForGood) {
  AdaptiveLimit limit({.min_limit = 4, .max_limit = 256});
  Saturate(limit, {.knee = 8, .slope = 4}, 150);
  ASSERT_NEAR(absl::ToDoubleMilliseconds(limit.baseline()), 20, 0.01);
  // Twice as slow at every concurrency from now on (same knee): the old baseline ages out, and
  // the limit finds the same knee again instead of sinking to MIN.
  const SaturatedRun after = Saturate(limit, {.knee = 8, .slope = 4}, 500, /*slowdown=*/2);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(limit.baseline()), 40, 0.01);
  EXPECT_GE(after.limits.back(), 7);
  EXPECT_LE(after.limits.back(), 10);
}

TEST(AdaptiveLimitOptionsTest, ValidateRejectsAnEmptyOrOutOfRangeRange) {
  EXPECT_TRUE(AdaptiveLimitOptions{}.Validate().ok());
  EXPECT_TRUE((AdaptiveLimitOptions{.min_limit = 5, .max_limit = 5}).Validate().ok());
  EXPECT_FALSE((AdaptiveLimitOptions{.min_limit = 0, .max_limit = 5}).Validate().ok());
  EXPECT_FALSE((AdaptiveLimitOptions{.min_limit = 6, .max_limit = 5}).Validate().ok());
  EXPECT_FALSE((AdaptiveLimitOptions{.min_limit = 1, .max_limit = 2'000'000}).Validate().ok());
}

}  // namespace
}  // namespace flightcache
