// lib/src/sim/sim_origin.cc: the sim:// origin (an Origin over sim::OriginModel), on a fake
// clock.
#include "flightcache/sim/sim_origin.h"

#include <atomic>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "flightcache/timer_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace flightcache::sim {
namespace {

using ::flightcache::testing::FakeTimerQueue;
using ::testing::HasSubstr;

// Collects one fetch's answer.
struct Answer {
  std::optional<absl::StatusOr<FetchResult>> result;
  FetchCallback Callback() {
    return [this](absl::StatusOr<FetchResult> r) { result = std::move(r); };
  }
};

OriginModelOptions Options(absl::string_view query) {
  absl::StatusOr<OriginModelOptions> options = ParseSimOriginQuery(query);
  EXPECT_TRUE(options.ok()) << options.status();
  return options.value_or(SimOriginDefaults());
}

TEST(SimOriginTest, ParsesEveryParameter) {
  const OriginModelOptions o = Options(
      "latency_ms=12.5&jitter_ms=2&value_bytes=64&error_rate=0.25&not_found_rate=0.5&ttl_ms=900&"
      "seed=7");
  EXPECT_EQ(o.latency.kind, LatencyDistribution::Kind::kJitter);
  EXPECT_EQ(o.latency.a, absl::Microseconds(12500));
  EXPECT_EQ(o.latency.b, absl::Milliseconds(2));
  EXPECT_EQ(o.value_bytes, 64);
  EXPECT_DOUBLE_EQ(o.error_rate, 0.25);
  EXPECT_DOUBLE_EQ(o.not_found_rate, 0.5);
  EXPECT_EQ(o.ttl, absl::Milliseconds(900));
  EXPECT_EQ(o.seed, 7u);
  const OriginModelOptions defaults = Options("");
  EXPECT_EQ(defaults.latency.a, absl::Milliseconds(20));
  EXPECT_EQ(defaults.latency.b, absl::Milliseconds(5));
  EXPECT_EQ(defaults.value_bytes, 128);
  EXPECT_EQ(defaults.version_slots, 1 << 16);
  EXPECT_FALSE(defaults.seed.has_value());
  EXPECT_EQ(Options("latency_ms=7").latency.b, absl::Milliseconds(5));  // jitter's default kept
  // Any latency shape, as flightcache-origin's --latency spells it.
  const OriginModelOptions lognormal = Options("latency=lognormal:5ms,0.5");
  EXPECT_EQ(lognormal.latency.kind, LatencyDistribution::Kind::kLognormal);
  EXPECT_EQ(lognormal.latency.a, absl::Milliseconds(5));
}

TEST(SimOriginTest, RejectsUnknownParametersAndBadValues) {
  for (const char* query :
       {"latency=5", "latency_ms=x", "latency_ms=-1", "jitter_ms=nan", "value_bytes=-1",
        "value_bytes=1.5", "error_rate=2", "not_found_rate=-0.1", "ttl_ms=-1", "seed=-1",
        "latency_ms", "latency_ms=1&latency_ms=2", "latency=fixed:5",
        "latency=fixed:1ms&jitter_ms=1", "latency_ms=1&latency=fixed:1ms"}) {
    EXPECT_FALSE(ParseSimOriginQuery(query).ok()) << query;
  }
  EXPECT_THAT(std::string(ParseSimOriginQuery("colour=red").status().message()),
              HasSubstr("colour"));
}

TEST(SimOriginTest, AnswersAfterItsLatencyWithAValueNamingKeyAndVersion) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=20&jitter_ms=0&value_bytes=100"), timers);
  Answer first;
  origin.Fetch({.key = "user:1"}, {}, first.Callback());
  timers.Advance(absl::Milliseconds(19));
  EXPECT_FALSE(first.result.has_value());  // a timer, not an inline answer
  timers.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(first.result.has_value());
  ASSERT_TRUE(first.result->ok()) << first.result->status();
  EXPECT_EQ((*first.result)->value.size(), 100u);
  EXPECT_EQ((*first.result)->ttl, absl::ZeroDuration());
  std::optional<SimValueInfo> info = DecodeSimValue((*first.result)->value);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->key, "user:1");
  EXPECT_EQ(info->version, 1u);

  Answer second;
  origin.Fetch({.key = "user:1"}, {}, second.Callback());
  timers.Advance(absl::Milliseconds(20));
  ASSERT_TRUE(second.result.has_value() && second.result->ok());
  EXPECT_EQ(DecodeSimValue((*second.result)->value)->version, 2u);
  EXPECT_EQ(origin.counters().fetches, 2);
  EXPECT_EQ(origin.counters().values, 2);
}

TEST(SimOriginTest, JitterStaysWithinItsBounds) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=10&jitter_ms=5&seed=1"), timers);
  constexpr int kFetches = 50;
  Answer answers[kFetches];
  for (Answer& a : answers) origin.Fetch({.key = "k"}, {}, a.Callback());
  timers.Advance(absl::Microseconds(4999));
  for (const Answer& a : answers) EXPECT_FALSE(a.result.has_value());
  timers.Advance(absl::Milliseconds(10) + absl::Microseconds(2));
  for (const Answer& a : answers) EXPECT_TRUE(a.result.has_value());
}

TEST(SimOriginTest, CancellationAnswersCancelledAtOnceAndDropsTheTimer) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=1000&jitter_ms=0"), timers);
  std::stop_source stop;
  Answer answer;
  origin.Fetch({.key = "k"}, stop.get_token(), answer.Callback());
  EXPECT_EQ(timers.pending(), 1u);
  stop.request_stop();
  ASSERT_TRUE(answer.result.has_value());
  EXPECT_TRUE(absl::IsCancelled(answer.result->status()));
  EXPECT_EQ(timers.pending(), 0u);
  EXPECT_EQ(origin.counters().cancelled, 1);

  std::stop_source already;
  already.request_stop();
  Answer late;
  origin.Fetch({.key = "k"}, already.get_token(), late.Callback());
  ASSERT_TRUE(late.result.has_value());
  EXPECT_TRUE(absl::IsCancelled(late.result->status()));
  EXPECT_EQ(origin.counters().cancelled, 2);
  EXPECT_EQ(origin.counters().inflight, 0);
}

TEST(SimOriginTest, StopAfterTheAnswerChangesNothing) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=1&jitter_ms=0"), timers);
  std::stop_source stop;
  int calls = 0;
  origin.Fetch({.key = "k"}, stop.get_token(), [&](absl::StatusOr<FetchResult> r) {
    ++calls;
    EXPECT_TRUE(r.ok());
  });
  timers.Advance(absl::Milliseconds(1));
  stop.request_stop();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(origin.counters().cancelled, 0);
}

TEST(SimOriginTest, ErrorAndNotFoundRates) {
  FakeTimerQueue timers;
  SimOrigin failing(Options("latency_ms=1&jitter_ms=0&error_rate=1"), timers);
  SimOrigin missing(Options("latency_ms=1&jitter_ms=0&not_found_rate=1&ttl_ms=5"), timers);
  Answer a, b;
  failing.Fetch({.key = "k"}, {}, a.Callback());
  missing.Fetch({.key = "k"}, {}, b.Callback());
  timers.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(a.result.has_value() && b.result.has_value());
  EXPECT_TRUE(absl::IsUnavailable(a.result->status()));
  EXPECT_TRUE(absl::IsNotFound(b.result->status()));
}

// NOT_FOUND is a property of the key (as with a real backend), not a per-fetch draw: a key the
// origin does not have is missing on every fetch, and every other key is always found.
TEST(SimOriginTest, NotFoundIsTheSameKeysOnEveryFetch) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=1&jitter_ms=0&not_found_rate=0.3"), timers);
  int missing = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) {
      const std::string key = absl::StrCat("key-", i);
      Answer answer;
      origin.Fetch({.key = key}, {}, answer.Callback());
      timers.Advance(absl::Milliseconds(1));
      ASSERT_TRUE(answer.result.has_value());
      EXPECT_EQ(absl::IsNotFound(answer.result->status()), KeyIsMissing(key, 0.3)) << key;
      missing += absl::IsNotFound(answer.result->status());
    }
  }
  EXPECT_GT(missing, 3 * 10);
  EXPECT_LT(missing, 3 * 50);
}

TEST(SimOriginTest, RejectsAboveItsLimitAtOnce) {
  FakeTimerQueue timers;
  OriginModelOptions options = Options("latency_ms=5&jitter_ms=0");
  options.reject_above = 1;
  SimOrigin origin(options, timers);
  Answer first, second;
  origin.Fetch({.key = "a"}, {}, first.Callback());
  origin.Fetch({.key = "b"}, {}, second.Callback());
  ASSERT_TRUE(second.result.has_value());
  EXPECT_TRUE(absl::IsResourceExhausted(second.result->status()));
  timers.Advance(absl::Milliseconds(5));
  ASSERT_TRUE(first.result.has_value());
  EXPECT_TRUE(first.result->ok());
  EXPECT_EQ(origin.counters().rejected, 1);
}

// Timers answering on the timer thread race stop requests from other threads: every fetch must be
// answered exactly once, either way. Run under ThreadSanitizer too.
TEST(SimOriginTest, EveryFetchIsAnsweredOnceWhenCancellationRacesTheTimer) {
  ThreadTimerQueue timers;
  SimOrigin origin(Options("latency_ms=0.5&jitter_ms=0.5&error_rate=0.1&not_found_rate=0.1"),
                   timers);
  constexpr int kFetches = 2000;
  std::vector<std::stop_source> stops(kFetches);
  std::vector<std::atomic<int>> answers(kFetches);
  absl::BlockingCounter all_answered(kFetches);
  std::thread canceller([&] {
    for (int i = 0; i < kFetches; i += 2) stops[i].request_stop();
  });
  for (int i = 0; i < kFetches; ++i) {
    origin.Fetch({.key = absl::StrCat("k", i % 10)}, stops[i].get_token(),
                 [&, i](absl::StatusOr<FetchResult> r) {
                   if (r.ok()) {
                     EXPECT_EQ(DecodeSimValue(r->value)->key, absl::StrCat("k", i % 10));
                   }
                   answers[i].fetch_add(1);
                   all_answered.DecrementCount();
                 });
  }
  canceller.join();
  all_answered.Wait();
  for (int i = 0; i < kFetches; ++i) EXPECT_EQ(answers[i].load(), 1) << i;
  EXPECT_LE(origin.counters().cancelled, kFetches / 2);
  EXPECT_EQ(origin.counters().inflight, 0);
}

TEST(SimOriginTest, DescribeIsItsUrlWhichParsesBack) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=5&ttl_ms=100"), timers);
  EXPECT_EQ(origin.Describe(),
            "sim://?latency_ms=5&jitter_ms=5&value_bytes=128&error_rate=0&not_found_rate=0&"
            "ttl_ms=100");
  for (const char* query : {"latency_ms=5&ttl_ms=100&seed=3", "latency=bimodal:1ms,9ms,0.5",
                            "latency=fixed:2ms&not_found_rate=0.5"}) {
    const OriginModelOptions options = Options(query);
    const std::string url = SimOriginUrl(options);
    ASSERT_TRUE(url.starts_with("sim://?")) << url;
    const OriginModelOptions again = Options(url.substr(7));
    EXPECT_EQ(SimOriginUrl(again), url);
    EXPECT_EQ(again.latency.Max(), options.latency.Max()) << url;
    EXPECT_EQ(again.seed, options.seed) << url;
    EXPECT_EQ(again.ttl, options.ttl) << url;
    EXPECT_EQ(again.not_found_rate, options.not_found_rate) << url;
  }
}

}  // namespace
}  // namespace flightcache::sim
