// server/sim_origin.cc: the simulated origin, on a fake clock.
#include "server/sim_origin.h"

#include <atomic>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "flightcache/timer_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/origin_factory.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
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

SimOriginOptions Options(absl::string_view query) {
  absl::StatusOr<SimOriginOptions> options = ParseSimOriginQuery(query);
  EXPECT_TRUE(options.ok()) << options.status();
  return options.value_or(SimOriginOptions{});
}

TEST(SimOriginTest, ParsesEveryParameter) {
  const SimOriginOptions o = Options(
      "latency_ms=12.5&jitter_ms=2&value_bytes=64&error_rate=0.25&not_found_rate=0.5&ttl_ms=900&"
      "seed=7");
  EXPECT_EQ(o.latency, absl::Microseconds(12500));
  EXPECT_EQ(o.jitter, absl::Milliseconds(2));
  EXPECT_EQ(o.value_bytes, 64);
  EXPECT_DOUBLE_EQ(o.error_rate, 0.25);
  EXPECT_DOUBLE_EQ(o.not_found_rate, 0.5);
  EXPECT_EQ(o.ttl, absl::Milliseconds(900));
  EXPECT_EQ(o.seed, 7u);
  const SimOriginOptions defaults = Options("");
  EXPECT_EQ(defaults.latency, absl::Milliseconds(20));
  EXPECT_EQ(defaults.jitter, absl::Milliseconds(5));
  EXPECT_EQ(defaults.value_bytes, 128);
}

TEST(SimOriginTest, RejectsUnknownParametersAndBadValues) {
  for (const char* query :
       {"latency=5", "latency_ms=x", "latency_ms=-1", "jitter_ms=nan", "value_bytes=-1",
        "value_bytes=1.5", "error_rate=2", "not_found_rate=-0.1", "ttl_ms=-1", "seed=-1",
        "latency_ms", "latency_ms=1&latency_ms=2"}) {
    EXPECT_FALSE(ParseSimOriginQuery(query).ok()) << query;
  }
  EXPECT_THAT(std::string(ParseSimOriginQuery("colour=red").status().message()),
              HasSubstr("colour"));
}

TEST(SimOriginTest, OriginUrlsParse) {
  absl::StatusOr<OriginSpec> sim = ParseOriginUrl("sim://?latency_ms=1");
  ASSERT_TRUE(sim.ok());
  EXPECT_EQ(sim->kind, OriginSpec::Kind::kSim);
  EXPECT_EQ(sim->sim.latency, absl::Milliseconds(1));
  ASSERT_TRUE(ParseOriginUrl("sim://").ok());
  absl::StatusOr<OriginSpec> grpc = ParseOriginUrl("grpc://10.0.0.7:9000");
  ASSERT_TRUE(grpc.ok());
  EXPECT_EQ(grpc->kind, OriginSpec::Kind::kGrpc);
  EXPECT_EQ(grpc->grpc_target, "10.0.0.7:9000");
  EXPECT_TRUE(ParseOriginUrl("grpc://[::1]:9000").ok());
  EXPECT_TRUE(ParseOriginUrl("grpc://origin.internal:9000").ok());
  EXPECT_FALSE(ParseOriginUrl("grpc://origin.internal").ok());
  EXPECT_FALSE(ParseOriginUrl("http://x:1/p").ok());
}

// A URL with a control character is refused, and the message shows it escaped on one line.
TEST(SimOriginTest, AnOriginUrlWithAControlCharacterIsRefusedOnOneLine) {
  for (const std::string url :
       {std::string("grpc://origin:9000\nFAKE log line"), std::string("sim://?latency_ms=1\r"),
        std::string("grpc://origin\t:9000"), std::string("sim://?x=\x7f")}) {
    absl::StatusOr<OriginSpec> spec = ParseOriginUrl(url);
    ASSERT_FALSE(spec.ok()) << absl::CHexEscape(url);
    const std::string message(spec.status().message());
    EXPECT_EQ(message.find_first_of("\n\r\t\x7f"), std::string::npos) << message;
    EXPECT_NE(message.find("control character"), std::string::npos) << message;
  }
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
  std::optional<SimValueInfo> info = SimOrigin::ParseValue((*first.result)->value);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->key, "user:1");
  EXPECT_EQ(info->version, 1u);

  Answer second;
  origin.Fetch({.key = "user:1"}, {}, second.Callback());
  timers.Advance(absl::Milliseconds(20));
  ASSERT_TRUE(second.result.has_value() && second.result->ok());
  EXPECT_EQ(SimOrigin::ParseValue((*second.result)->value)->version, 2u);
  EXPECT_EQ(origin.fetches(), 2);
}

TEST(SimOriginTest, SmallValueBytesStillNamesTheKey) {
  const std::string value = SimOrigin::MakeValue("a:key:with:colons", 3, 4);
  std::optional<SimValueInfo> info = SimOrigin::ParseValue(value);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->key, "a:key:with:colons");
  EXPECT_EQ(info->version, 3u);
  EXPECT_FALSE(SimOrigin::ParseValue("something else").has_value());
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
  EXPECT_EQ(origin.cancelled(), 1);

  std::stop_source already;
  already.request_stop();
  Answer late;
  origin.Fetch({.key = "k"}, already.get_token(), late.Callback());
  ASSERT_TRUE(late.result.has_value());
  EXPECT_TRUE(absl::IsCancelled(late.result->status()));
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
  EXPECT_EQ(origin.cancelled(), 0);
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
                     EXPECT_EQ(SimOrigin::ParseValue(r->value)->key, absl::StrCat("k", i % 10));
                   }
                   answers[i].fetch_add(1);
                   all_answered.DecrementCount();
                 });
  }
  canceller.join();
  all_answered.Wait();
  for (int i = 0; i < kFetches; ++i) EXPECT_EQ(answers[i].load(), 1) << i;
  EXPECT_LE(origin.cancelled(), kFetches / 2);
}

TEST(SimOriginTest, DescribeIsItsUrl) {
  FakeTimerQueue timers;
  SimOrigin origin(Options("latency_ms=5&ttl_ms=100"), timers);
  EXPECT_EQ(origin.Describe(),
            "sim://?latency_ms=5&jitter_ms=5&value_bytes=128&error_rate=0&not_found_rate=0&"
            "ttl_ms=100");
  EXPECT_TRUE(ParseOriginUrl(origin.Describe()).ok());
}

}  // namespace
}  // namespace flightcache
