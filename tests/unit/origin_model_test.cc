#include "client/origin/origin_model.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace flightcache::demo_origin {
namespace {

OriginModelOptions Options() {
  OriginModelOptions o;
  o.latency = *LatencyDistribution::Parse("fixed:10ms");
  o.value_bytes = 64;
  return o;
}

TEST(OriginModelTest, ValuesEncodeKeyAndAVersionThatGrowsPerFetch) {
  OriginModel model(Options());
  for (int64_t expected = 1; expected <= 3; ++expected) {
    FetchPlan plan = model.BeginFetch("user:42", 1);
    ASSERT_EQ(plan.outcome, FetchOutcome::kValue);
    EXPECT_EQ(plan.version, expected);
    EXPECT_EQ(plan.value.size(), 64u);
    std::string key;
    int64_t version = 0;
    ASSERT_TRUE(DecodeValue(plan.value, &key, &version));
    EXPECT_EQ(key, "user:42");
    EXPECT_EQ(version, expected);
    model.EndFetch(plan.outcome, FetchEnd::kAnswered);
  }
  EXPECT_EQ(model.version("user:42"), 3);
  EXPECT_EQ(model.version("other"), 0);
  EXPECT_EQ(model.BeginFetch("other", 1).version, 1);  // versions are per key
}

TEST(OriginModelTest, EncodingRoundTripsAwkwardKeysAndNeverTruncates) {
  for (const std::string& key : {std::string(""), std::string("a;b:c"), std::string(300, 'k')}) {
    const std::string value = EncodeValue(key, 12345, 16);
    EXPECT_GE(value.size(), 16u);
    std::string decoded;
    int64_t version = 0;
    ASSERT_TRUE(DecodeValue(value, &decoded, &version)) << value;
    EXPECT_EQ(decoded, key);
    EXPECT_EQ(version, 12345);
  }
  std::string key;
  int64_t version;
  EXPECT_FALSE(DecodeValue("garbage", &key, &version));
  EXPECT_FALSE(DecodeValue("v1:99:short;", &key, &version));
}

TEST(OriginModelTest, NotFoundKeysAreAStableShareOfKeys) {
  OriginModelOptions o = Options();
  o.not_found_rate = 0.25;
  OriginModel model(o);
  int missing = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string key = absl::StrCat("key-", i);
    const FetchPlan plan = model.BeginFetch(key, 1);
    model.EndFetch(plan.outcome, FetchEnd::kAnswered);
    missing += plan.outcome == FetchOutcome::kNotFound;
    // The same key always answers the same way.
    EXPECT_EQ(plan.outcome == FetchOutcome::kNotFound, KeyIsMissing(key, 0.25));
  }
  EXPECT_NEAR(static_cast<double>(missing) / n, 0.25, 0.02);
  EXPECT_EQ(model.counters().not_found, missing);
  EXPECT_EQ(model.counters().values, n - missing);
}

TEST(OriginModelTest, ErrorsHitTheConfiguredShareOfFetches) {
  OriginModelOptions o = Options();
  o.error_rate = 0.1;
  OriginModel model(o);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const FetchPlan plan = model.BeginFetch("same-key", 1);
    model.EndFetch(plan.outcome, FetchEnd::kAnswered);
  }
  EXPECT_NEAR(static_cast<double>(model.counters().errors) / n, 0.1, 0.01);
  // Failed fetches do not consume versions.
  EXPECT_EQ(model.version("same-key"), model.counters().values);
}

TEST(OriginModelTest, CountsInflightPeakCancellationsAndHedges) {
  OriginModel model(Options());
  std::vector<FetchPlan> plans;
  for (int i = 0; i < 5; ++i)
    plans.push_back(model.BeginFetch(absl::StrCat("k", i % 2), i == 4 ? 2 : 1));
  EXPECT_EQ(model.counters().inflight, 5);
  model.EndFetch(plans[0].outcome, FetchEnd::kAnswered);
  model.EndFetch(plans[1].outcome, FetchEnd::kCancelled);
  model.EndFetch(plans[2].outcome, FetchEnd::kDeadlineExceeded);
  plans.push_back(model.BeginFetch("k9", 1));
  const OriginCounters c = model.counters();
  EXPECT_EQ(c.fetches, 6);
  EXPECT_EQ(c.primary_fetches, 5);
  EXPECT_EQ(c.hedge_fetches, 1);
  EXPECT_EQ(c.inflight, 3);
  EXPECT_EQ(c.peak_inflight, 5);
  EXPECT_EQ(c.cancelled, 2);
  EXPECT_EQ(c.deadline_exceeded, 1);
  EXPECT_EQ(c.values, 1);
  EXPECT_EQ(c.keys, 3);
}

TEST(OriginModelTest, LatencyGrowsInProportionToTheOverload) {
  OriginModelOptions o = Options();
  o.overload_threshold = 4;
  o.overload_slope = 1.0;
  OriginModel model(o);
  std::vector<absl::Duration> latencies;
  for (int i = 0; i < 8; ++i) latencies.push_back(model.BeginFetch("k", 1).latency);
  // In flight 1..4: the base 10 ms; 5..8: 10 ms * (1 + (n - 4) / 4).
  for (int i = 0; i < 4; ++i) EXPECT_EQ(latencies[i], absl::Milliseconds(10));
  EXPECT_EQ(latencies[4], absl::Microseconds(12500));
  EXPECT_EQ(latencies[7], absl::Milliseconds(20));
}

TEST(OriginModelTest, RejectsAboveTheLimitAtOnce) {
  OriginModelOptions o = Options();
  o.reject_above = 2;
  OriginModel model(o);
  const FetchPlan a = model.BeginFetch("a", 1);
  const FetchPlan b = model.BeginFetch("b", 1);
  EXPECT_EQ(model.BeginFetch("c", 1).outcome, FetchOutcome::kRejected);
  EXPECT_EQ(model.counters().inflight, 2);  // a rejected fetch is not in flight
  model.EndFetch(a.outcome, FetchEnd::kAnswered);
  EXPECT_EQ(model.BeginFetch("c", 1).outcome, FetchOutcome::kValue);
  EXPECT_EQ(model.counters().rejected, 1);
  (void)b;
}

TEST(OriginModelTest, ValidateNamesTheFlag) {
  OriginModelOptions o;
  o.error_rate = 1.5;
  EXPECT_NE(o.Validate().message().find("--error-rate"), absl::string_view::npos);
  o = OriginModelOptions();
  o.not_found_rate = -0.1;
  EXPECT_NE(o.Validate().message().find("--not-found-rate"), absl::string_view::npos);
  o = OriginModelOptions();
  o.value_bytes = -1;
  EXPECT_NE(o.Validate().message().find("--value-bytes"), absl::string_view::npos);
  EXPECT_TRUE(OriginModelOptions().Validate().ok());
}

TEST(OriginModelTest, ConcurrentFetchesKeepCountersConsistent) {
  OriginModel model(Options());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&model, t] {
      for (int i = 0; i < 2000; ++i) {
        const FetchPlan plan = model.BeginFetch(absl::StrCat("k", (i + t) % 10), 1);
        model.EndFetch(plan.outcome, FetchEnd::kAnswered);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const OriginCounters c = model.counters();
  EXPECT_EQ(c.fetches, 8000);
  EXPECT_EQ(c.values, 8000);
  EXPECT_EQ(c.inflight, 0);
  int64_t versions = 0;
  for (int k = 0; k < 10; ++k) versions += model.version(absl::StrCat("k", k));
  EXPECT_EQ(versions, 8000);  // every value fetch got its own version
}

}  // namespace
}  // namespace flightcache::demo_origin
