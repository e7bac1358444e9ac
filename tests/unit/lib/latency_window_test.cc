#include "flightcache/latency_window.h"

#include "gtest/gtest.h"

namespace flightcache {
namespace {

TEST(LatencyWindowTest, NearestRankPercentile) {
  LatencyWindow window(10);
  for (int ms = 1; ms <= 10; ++ms) window.Add(absl::Milliseconds(ms));
  EXPECT_EQ(window.size(), 10u);
  EXPECT_EQ(window.Percentile(50), absl::Milliseconds(5));
  EXPECT_EQ(window.Percentile(95), absl::Milliseconds(10));  // ceil(9.5) = 10th
  EXPECT_EQ(window.Percentile(10), absl::Milliseconds(1));
  EXPECT_EQ(window.Percentile(100), absl::Milliseconds(10));
}

TEST(LatencyWindowTest, KeepsOnlyTheMostRecentSamples) {
  LatencyWindow window(3);
  for (int ms : {100, 100, 100, 1, 2, 3}) window.Add(absl::Milliseconds(ms));
  EXPECT_EQ(window.size(), 3u);
  EXPECT_EQ(window.Percentile(100), absl::Milliseconds(3)) << "old samples must leave";
  window.Add(absl::Milliseconds(50));  // replaces the oldest (1)
  EXPECT_EQ(window.Percentile(1), absl::Milliseconds(2));
}

}  // namespace
}  // namespace flightcache
