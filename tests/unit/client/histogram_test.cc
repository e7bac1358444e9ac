#include "client/loadgen/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

// The order statistic a quantile names: the smallest value with at least q·n values <= it.
uint64_t ExactQuantile(const std::vector<uint64_t>& sorted, double q) {
  const size_t rank =
      std::max<size_t>(1, static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size()))));
  return sorted[rank - 1];
}

void ExpectWithinOnePercent(const Histogram& h, std::vector<uint64_t> values) {
  std::sort(values.begin(), values.end());
  for (const double q : {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999}) {
    const double exact = static_cast<double>(ExactQuantile(values, q));
    const double got = static_cast<double>(h.ValueAtQuantile(q));
    EXPECT_LE(std::abs(got - exact), 0.01 * exact)
        << "q=" << q << " exact=" << exact << " got=" << got;
  }
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.ValueAtQuantile(1.0), values.back());
}

TEST(HistogramTest, EmptyHistogramReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 0; v < 256; ++v) h.Record(v);
  for (uint64_t v = 1; v <= 256; ++v) {
    EXPECT_EQ(h.ValueAtQuantile(static_cast<double>(v) / 256.0), v - 1);
  }
}

TEST(HistogramTest, BucketsTileTheWholeRangeAndAreNarrow) {
  EXPECT_EQ(Histogram::BucketLowest(0), 0u);
  for (size_t i = 0; i + 1 < Histogram::kBucketCount; ++i) {
    ASSERT_EQ(Histogram::BucketHighest(i) + 1, Histogram::BucketLowest(i + 1)) << i;
    const double low = static_cast<double>(Histogram::BucketLowest(i));
    const double width = static_cast<double>(Histogram::BucketHighest(i)) - low + 1;
    if (i >= 256) {
      EXPECT_LE(width / low, 1.0 / 128 + 1e-12) << i;
    }
  }
  EXPECT_EQ(Histogram::BucketHighest(Histogram::kBucketCount - 1), UINT64_MAX);
  EXPECT_EQ(Histogram::BucketIndex(UINT64_MAX), Histogram::kBucketCount - 1);

  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    const size_t index = Histogram::BucketIndex(v);
    ASSERT_LE(Histogram::BucketLowest(index), v);
    ASSERT_GE(Histogram::BucketHighest(index), v);
  }
}

TEST(HistogramTest, QuantilesWithinOnePercentFromNanosecondsToMinutes) {
  // Log-uniform over 1 ns .. 1000 s: every bucket size the loadgen will meet.
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> exponent(0, 12);
  Histogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 200000; ++i) {
    const uint64_t v = static_cast<uint64_t>(std::pow(10.0, exponent(rng)));
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinOnePercent(h, values);
}

TEST(HistogramTest, QuantilesWithinOnePercentForALongTailedLatencyShape) {
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> latency(std::log(2e6), 0.8);  // median 2 ms
  Histogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = static_cast<uint64_t>(latency(rng));
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinOnePercent(h, values);
  double sum = 0;
  for (const uint64_t v : values) sum += static_cast<double>(v);
  EXPECT_NEAR(h.mean(), sum / values.size(), 1e-6 * sum / values.size());
}

TEST(HistogramTest, MergeEqualsRecordingEverythingInOne) {
  Histogram a, b, all;
  for (uint64_t v = 1; v < 1000000; v = v * 3 + 1) {
    a.Record(v);
    all.Record(v);
    b.Record(v * 7, 2);
    all.Record(v * 7, 2);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  for (const double q : {0.1, 0.5, 0.9, 0.99}) {
    EXPECT_EQ(a.ValueAtQuantile(q), all.ValueAtQuantile(q));
  }
}

TEST(HistogramTest, ResetForgetsEverything) {
  Histogram h;
  h.Record(123456789);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
  h.Record(5);
  EXPECT_EQ(h.max(), 5u);
  EXPECT_EQ(h.min(), 5u);
}

TEST(HistogramTest, ExtremeValuesDoNotOverflow) {
  Histogram h;
  h.Record(UINT64_MAX);
  h.Record(0);
  EXPECT_EQ(h.max(), UINT64_MAX);
  EXPECT_EQ(h.ValueAtQuantile(1.0), UINT64_MAX);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 0u);
}

}  // namespace
}  // namespace flightcache::loadgen
