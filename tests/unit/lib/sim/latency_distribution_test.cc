#include "flightcache/sim/latency_distribution.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace flightcache::sim {
namespace {

TEST(LatencyDistributionTest, ParsesEveryKind) {
  auto fixed = LatencyDistribution::Parse("fixed:5ms");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->a, absl::Milliseconds(5));
  auto uniform = LatencyDistribution::Parse("uniform:2ms,10ms");
  ASSERT_TRUE(uniform.ok());
  EXPECT_EQ(uniform->b, absl::Milliseconds(10));
  auto lognormal = LatencyDistribution::Parse("lognormal:5ms,0.5");
  ASSERT_TRUE(lognormal.ok());
  EXPECT_DOUBLE_EQ(lognormal->p, 0.5);
  auto bimodal = LatencyDistribution::Parse("bimodal:5ms,200ms,0.02");
  ASSERT_TRUE(bimodal.ok());
  EXPECT_EQ(bimodal->kind, LatencyDistribution::Kind::kBimodal);
  EXPECT_EQ(bimodal->ToString(), "bimodal:5ms,200ms,0.02");
  auto jitter = LatencyDistribution::Parse("jitter:20ms,5ms");
  ASSERT_TRUE(jitter.ok());
  EXPECT_EQ(jitter->kind, LatencyDistribution::Kind::kJitter);
  EXPECT_EQ(jitter->ToString(), "jitter:20ms,5ms");
  EXPECT_EQ(jitter->Max(), absl::Milliseconds(25));
}

TEST(LatencyDistributionTest, RejectsBadSpecs) {
  for (const char* bad :
       {"", "fixed", "fixed:5", "fixed:-1ms", "uniform:5ms", "uniform:9ms,1ms", "jitter:5ms",
        "jitter:5ms,-1ms", "lognormal:0s,1", "lognormal:5ms,x", "bimodal:5ms,200ms",
        "bimodal:5ms,200ms,2", "keyed:5ms,200ms,-0.1", "keyed:5ms,200ms", "pareto:1ms"}) {
    EXPECT_FALSE(LatencyDistribution::Parse(bad).ok()) << bad;
  }
}

std::vector<absl::Duration> Samples(const char* spec, int n) {
  const LatencyDistribution d = *LatencyDistribution::Parse(spec);
  std::mt19937_64 rng(9);
  std::vector<absl::Duration> out;
  for (int i = 0; i < n; ++i) out.push_back(d.Sample(rng));
  return out;
}

// The mean of 20,000 samples of `spec`, in milliseconds, after checking each is in [lo, hi] ms.
double MeanWithin(const char* spec, double lo, double hi) {
  double sum = 0;
  for (const absl::Duration d : Samples(spec, 20000)) {
    EXPECT_GE(absl::ToDoubleMilliseconds(d), lo) << spec;
    EXPECT_LE(absl::ToDoubleMilliseconds(d), hi) << spec;
    sum += absl::ToDoubleMilliseconds(d);
  }
  return sum / 20000;
}

TEST(LatencyDistributionTest, FixedAndUniformStayInRange) {
  for (const absl::Duration d : Samples("fixed:7ms", 100)) EXPECT_EQ(d, absl::Milliseconds(7));
  EXPECT_NEAR(MeanWithin("uniform:2ms,10ms", 2, 10), 6.0, 0.1);
}

// sim://'s latency_ms ± jitter_ms: uniform around the centre, never below 0.
TEST(LatencyDistributionTest, JitterStaysWithinItsBoundsAndAtLeastZero) {
  EXPECT_NEAR(MeanWithin("jitter:10ms,4ms", 6, 14), 10.0, 0.1);
  int zeros = 0;
  for (const absl::Duration d : Samples("jitter:1ms,3ms", 20000)) {
    ASSERT_GE(d, absl::ZeroDuration());
    ASSERT_LE(d, absl::Milliseconds(4));
    zeros += d == absl::ZeroDuration();
  }
  EXPECT_NEAR(zeros / 20000.0, 1.0 / 3, 0.02);  // the draws below 0: [-2 ms, 0) of [-2, 4]
}

// A fixed latency and a jitter of 0 draw nothing, so the errors drawn after them line up.
TEST(LatencyDistributionTest, FixedAndZeroJitterDrawNoRandomNumber) {
  std::mt19937_64 rng(3);
  const std::mt19937_64 before = rng;
  EXPECT_EQ(LatencyDistribution::Fixed(absl::Milliseconds(2)).Sample(rng), absl::Milliseconds(2));
  EXPECT_EQ(LatencyDistribution::Jitter(absl::Milliseconds(2), absl::ZeroDuration()).Sample(rng),
            absl::Milliseconds(2));
  EXPECT_TRUE(rng == before);
}

TEST(LatencyDistributionTest, BimodalHasTheConfiguredSlowShare) {
  int slow = 0;
  const int n = 50000;
  for (const absl::Duration d : Samples("bimodal:5ms,200ms,0.02", n)) {
    ASSERT_TRUE(d == absl::Milliseconds(5) || d == absl::Milliseconds(200));
    slow += d == absl::Milliseconds(200);
  }
  EXPECT_NEAR(static_cast<double>(slow) / n, 0.02, 0.003);
}

TEST(LatencyDistributionTest, LognormalHasTheConfiguredMedianAndALongTail) {
  std::vector<absl::Duration> s = Samples("lognormal:5ms,0.5", 20001);
  std::sort(s.begin(), s.end());
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s[10000]), 5.0, 0.15);
  // p99 of a lognormal is median * exp(2.326 sigma) = 5 ms * 3.2.
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s[19801]), 5.0 * std::exp(2.326 * 0.5), 0.8);
}

// keyed: the key's point decides, not a draw; the same key is always slow or always fast.
TEST(LatencyDistributionTest, KeyedIsSlowForTheKeysBelowP) {
  auto keyed = LatencyDistribution::Parse("keyed:5ms,200ms,0.1");
  ASSERT_TRUE(keyed.ok()) << keyed.status();
  EXPECT_EQ(keyed->kind, LatencyDistribution::Kind::kKeyed);
  EXPECT_EQ(keyed->ToString(), "keyed:5ms,200ms,0.1");
  EXPECT_EQ(keyed->Max(), absl::Milliseconds(200));
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(keyed->Sample(rng, 0.05), absl::Milliseconds(200));
    EXPECT_EQ(keyed->Sample(rng, 0.5), absl::Milliseconds(5));
  }
}

}  // namespace
}  // namespace flightcache::sim
