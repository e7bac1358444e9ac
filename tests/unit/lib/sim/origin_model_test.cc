#include "flightcache/sim/origin_model.h"

#include <algorithm>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace flightcache::sim {
namespace {

OriginModelOptions Options() {
  OriginModelOptions o;
  o.latency = *LatencyDistribution::Parse("fixed:10ms");
  o.value_bytes = 64;
  o.seed = 1;
  return o;
}

// Begins and answers one fetch of `key`.
absl::StatusOr<FetchResult> FetchNow(OriginModel& model, absl::string_view key) {
  const FetchPlan plan = model.BeginFetch(key, 1);
  return model.EndFetch(key, plan, FetchEnd::kAnswered);
}

TEST(OriginModelTest, ValuesEncodeKeyAndAVersionThatGrowsPerAnswer) {
  OriginModelOptions o = Options();
  o.ttl = absl::Seconds(3);
  OriginModel model(o);
  for (uint64_t expected = 1; expected <= 3; ++expected) {
    absl::StatusOr<FetchResult> answer = FetchNow(model, "user:42");
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->value.size(), 64u);
    EXPECT_EQ(answer->ttl, absl::Seconds(3));
    const std::optional<SimValueInfo> info = DecodeSimValue(answer->value);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->key, "user:42");
    EXPECT_EQ(info->version, expected);
  }
  EXPECT_EQ(model.version("user:42"), 3u);
  EXPECT_EQ(model.version("other"), 0u);
  EXPECT_EQ(DecodeSimValue(FetchNow(model, "other")->value)->version, 1u);  // per key
  // A fetch cancelled before its answer takes no version.
  const FetchPlan plan = model.BeginFetch("other", 1);
  EXPECT_TRUE(absl::IsCancelled(model.EndFetch("other", plan, FetchEnd::kCancelled).status()));
  EXPECT_EQ(model.version("other"), 1u);
}

TEST(OriginModelTest, EncodingRoundTripsAwkwardKeysAndNeverTruncates) {
  for (const std::string& key : {std::string(""), std::string("a;b:c\nd"),
                                 std::string("a:key:with:colons"), std::string(300, 'k')}) {
    const std::string value = EncodeSimValue(key, 12345, 16);
    EXPECT_GE(value.size(), 16u);
    const std::optional<SimValueInfo> info = DecodeSimValue(value);
    ASSERT_TRUE(info.has_value()) << value;
    EXPECT_EQ(info->key, key);
    EXPECT_EQ(info->version, 12345u);
  }
  EXPECT_EQ(EncodeSimValue("k", 1, 100).size(), 100u);
  EXPECT_FALSE(DecodeSimValue("garbage").has_value());
  EXPECT_FALSE(DecodeSimValue("sim-value v=1 key=99:short\n").has_value());
}

TEST(OriginModelTest, VersionSlotsBoundMemoryAndStillGrowPerKey) {
  OriginModelOptions o = Options();
  o.version_slots = 4;
  OriginModel model(o);
  for (int i = 0; i < 100; ++i) {
    const std::string key = absl::StrCat("key-", i);
    const uint64_t before = model.version(key);
    const std::optional<SimValueInfo> info = DecodeSimValue(FetchNow(model, key)->value);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->version, before + 1) << key;  // the slot's counter, shared by ~25 keys
  }
  EXPECT_EQ(model.counters().values, 100);
  EXPECT_EQ(model.counters().keys, 0);  // not counted with slots
  uint64_t versions = 0;
  for (int i = 0; i < 4; ++i) versions = std::max(versions, model.version(absl::StrCat("key-", i)));
  EXPECT_LT(versions, 100u);  // several slots share the 100 versions
}

TEST(OriginModelTest, NotFoundKeysAreAStableShareOfKeys) {
  OriginModelOptions o = Options();
  o.not_found_rate = 0.25;
  OriginModel model(o);
  int missing = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string key = absl::StrCat("key-", i);
    const bool not_found = absl::IsNotFound(FetchNow(model, key).status());
    missing += not_found;
    // The same key always answers the same way.
    EXPECT_EQ(not_found, KeyIsMissing(key, 0.25));
  }
  EXPECT_NEAR(static_cast<double>(missing) / n, 0.25, 0.02);
  EXPECT_EQ(model.counters().not_found, missing);
  EXPECT_EQ(model.counters().values, n - missing);
  // Asked again, each key answers as before: a missing key never appears.
  for (int i = 0; i < 200; ++i) {
    const std::string key = absl::StrCat("key-", i);
    EXPECT_EQ(absl::IsNotFound(FetchNow(model, key).status()), KeyIsMissing(key, 0.25)) << key;
  }
}

// keyed latency: a stable share of the keys is slow on every fetch, and not the missing keys.
TEST(OriginModelTest, KeyedLatencyIsSlowForTheSameKeysEveryTime) {
  OriginModelOptions o = Options();
  o.latency = *LatencyDistribution::Parse("keyed:5ms,200ms,0.1");
  o.not_found_rate = 0.1;
  OriginModel model(o);
  int slow = 0;
  int slow_and_missing = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string key = absl::StrCat("key-", i);
    const absl::Duration first = model.BeginFetch(key, 1).latency;
    EXPECT_EQ(model.BeginFetch(key, 2).latency, first) << key << ": a hedge is no faster";
    if (first == absl::Milliseconds(200)) {
      ++slow;
      slow_and_missing += KeyIsMissing(key, 0.1);
    } else {
      EXPECT_EQ(first, absl::Milliseconds(5));
    }
  }
  EXPECT_NEAR(static_cast<double>(slow) / n, 0.1, 0.02);
  EXPECT_EQ(slow_and_missing, 0);
}

TEST(OriginModelTest, ErrorsHitTheConfiguredShareOfFetches) {
  OriginModelOptions o = Options();
  o.error_rate = 0.1;
  OriginModel model(o);
  const int n = 20000;
  int unavailable = 0;
  for (int i = 0; i < n; ++i)
    unavailable += absl::IsUnavailable(FetchNow(model, "same-key").status());
  EXPECT_NEAR(static_cast<double>(model.counters().errors) / n, 0.1, 0.01);
  EXPECT_EQ(model.counters().errors, unavailable);
  // Failed fetches do not consume versions.
  EXPECT_EQ(static_cast<int64_t>(model.version("same-key")), model.counters().values);
}

TEST(OriginModelTest, CountsInflightPeakCancellationsAndHedges) {
  OriginModel model(Options());
  std::vector<FetchPlan> plans;
  for (int i = 0; i < 5; ++i)
    plans.push_back(model.BeginFetch(absl::StrCat("k", i % 2), i == 4 ? 2 : 1));
  EXPECT_EQ(model.counters().inflight, 5);
  EXPECT_TRUE(model.EndFetch("k0", plans[0], FetchEnd::kAnswered).ok());
  EXPECT_TRUE(absl::IsCancelled(model.EndFetch("k1", plans[1], FetchEnd::kCancelled).status()));
  EXPECT_TRUE(absl::IsDeadlineExceeded(
      model.EndFetch("k0", plans[2], FetchEnd::kDeadlineExceeded).status()));
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
  EXPECT_TRUE(absl::IsResourceExhausted(OriginModel::RejectedStatus()));
  EXPECT_EQ(model.counters().inflight, 2);  // a rejected fetch is not in flight
  ASSERT_TRUE(model.EndFetch("a", a, FetchEnd::kAnswered).ok());
  EXPECT_EQ(model.BeginFetch("c", 1).outcome, FetchOutcome::kValue);
  EXPECT_EQ(model.counters().rejected, 1);
  (void)b;
}

TEST(OriginModelTest, ValidateNamesTheOptionAsTheCallerSpellsIt) {
  auto flag = [](absl::string_view option) { return absl::StrCat("--", option); };
  OriginModelOptions o;
  o.error_rate = 1.5;
  EXPECT_NE(o.Validate(flag).message().find("--error_rate"), absl::string_view::npos);
  o = OriginModelOptions();
  o.not_found_rate = -0.1;
  EXPECT_NE(o.Validate().message().find("not_found_rate"), absl::string_view::npos);
  o = OriginModelOptions();
  o.value_bytes = -1;
  EXPECT_NE(o.Validate().message().find("value_bytes"), absl::string_view::npos);
  o = OriginModelOptions();
  o.ttl = -absl::Seconds(1);
  EXPECT_NE(o.Validate().message().find("ttl"), absl::string_view::npos);
  o = OriginModelOptions();
  o.latency = LatencyDistribution::Jitter(absl::InfiniteDuration(), absl::ZeroDuration());
  EXPECT_NE(o.Validate().message().find("latency"), absl::string_view::npos);
  EXPECT_TRUE(OriginModelOptions().Validate().ok());
}

// The same options and seed answer the same fetches alike, error draws included.
TEST(OriginModelTest, TheSameSeedGivesTheSameAnswers) {
  OriginModelOptions o = Options();
  o.latency = LatencyDistribution::Jitter(absl::Milliseconds(10), absl::Milliseconds(5));
  o.error_rate = 0.3;
  o.not_found_rate = 0.2;
  o.seed = 42;
  OriginModel a(o), b(o);
  int errors = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string key = absl::StrCat("k", i % 37);
    const FetchPlan plan_a = a.BeginFetch(key, 1);
    const FetchPlan plan_b = b.BeginFetch(key, 1);
    EXPECT_EQ(plan_a.latency, plan_b.latency);
    const absl::StatusOr<FetchResult> answer_a = a.EndFetch(key, plan_a, FetchEnd::kAnswered);
    const absl::StatusOr<FetchResult> answer_b = b.EndFetch(key, plan_b, FetchEnd::kAnswered);
    ASSERT_EQ(answer_a.status(), answer_b.status());
    if (answer_a.ok()) {
      EXPECT_EQ(answer_a->value, answer_b->value);
    }
    errors += absl::IsUnavailable(answer_a.status());
  }
  EXPECT_GT(errors, 20);
}

TEST(OriginModelTest, ConcurrentFetchesKeepCountersConsistent) {
  OriginModel model(Options());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&model, t] {
      for (int i = 0; i < 2000; ++i) {
        EXPECT_TRUE(FetchNow(model, absl::StrCat("k", (i + t) % 10)).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const OriginCounters c = model.counters();
  EXPECT_EQ(c.fetches, 8000);
  EXPECT_EQ(c.values, 8000);
  EXPECT_EQ(c.inflight, 0);
  uint64_t versions = 0;
  for (int k = 0; k < 10; ++k) versions += model.version(absl::StrCat("k", k));
  EXPECT_EQ(versions, 8000u);  // every value fetch got its own version
}

}  // namespace
}  // namespace flightcache::sim
