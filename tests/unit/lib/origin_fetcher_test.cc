#include "internal/origin_fetcher.h"

#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "flightcache/sim/sim_origin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/async_cancel_origin.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

using ::flightcache::testing::AsyncCancelOrigin;
using ::flightcache::testing::FakeTimerQueue;
using ::testing::HasSubstr;

constexpr absl::Duration kDelay = absl::Milliseconds(20);
const absl::Time kNoDeadline = absl::InfiniteFuture();

HedgeOptions Hedging() {
  HedgeOptions o;
  o.enabled = true;
  o.delay = kDelay;
  return o;
}

// Records what one Fetch() delivered; fails the test on a second call.
struct Outcome {
  int calls = 0;
  FetchOutcome outcome;
  OriginFetcher::Callback fn() {
    return [this](FetchOutcome o) {
      EXPECT_EQ(++calls, 1) << "done called more than once";
      outcome = std::move(o);
    };
  }
  absl::Status status() const { return outcome.result.status(); }
};

FetchResult Value(std::string v) { return FetchResult{std::move(v), absl::ZeroDuration()}; }

// The primary's permit comes free when its origin call has ended, not when the fetch was
// cancelled: an origin that acknowledges a cancellation later still works on the call.
TEST(OriginFetcherTest, PrimaryPermitIsHeldUntilItsOriginCallHasEnded) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 1, .max_queued = 10}, HedgeOptions{});
  std::stop_source stop_a;
  Outcome a, b;
  fetcher.Fetch("a", kNoDeadline, stop_a.get_token(), a.fn());
  fetcher.Fetch("b", kNoDeadline, {}, b.fn());
  ASSERT_EQ(origin.fetches(), 1u);
  EXPECT_EQ(fetcher.stats().queued, 1);

  stop_a.request_stop();
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(origin.cancel_seen(0));
  EXPECT_EQ(origin.fetches(), 1u) << "b was sent while a's cancelled call was still in flight";

  origin.Answer(0, absl::CancelledError("cancelled"));  // a's call has ended
  ASSERT_EQ(origin.fetches(), 2u);
  EXPECT_EQ(origin.key(1), "b");
  origin.Answer(1, Value("vb"));
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(b.outcome.end, FetchOutcome::End::kAnswered);
  EXPECT_EQ(b.outcome.result->value, "vb");
  EXPECT_EQ(origin.max_in_flight(), 1);
}

TEST(OriginFetcherTest, HedgePermitIsHeldUntilItsOriginCallHasEnded) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 2, .max_queued = 10}, Hedging());
  Outcome a, b;
  fetcher.Fetch("a", kNoDeadline, {}, a.fn());
  timers.Advance(kDelay);
  ASSERT_EQ(origin.fetches(), 2u) << "the hedge goes out";
  fetcher.Fetch("b", kNoDeadline, {}, b.fn());  // queued: both permits are in use
  origin.Answer(0, Value("va"));                // the primary wins; its permit goes to b
  ASSERT_EQ(a.calls, 1);
  ASSERT_TRUE(origin.cancel_seen(1));
  ASSERT_EQ(origin.fetches(), 3u);
  EXPECT_EQ(origin.key(2), "b");
  EXPECT_EQ(origin.max_in_flight(), 2) << "the beaten hedge's permit was given back too early";
  origin.Answer(1, absl::CancelledError("stopped"));
  origin.Answer(2, Value("vb"));
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(fetcher.stats().hedges_sent, 1);
  EXPECT_EQ(fetcher.stats().fetches, 3);
}

TEST(OriginFetcherTest, NoFreePermitMeansNoHedge) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 1, .max_queued = 10}, Hedging());
  Outcome a;
  fetcher.Fetch("a", kNoDeadline, {}, a.fn());
  timers.Advance(kDelay * 3);
  EXPECT_EQ(origin.fetches(), 1u) << "a hedge was sent without a permit";
  EXPECT_EQ(fetcher.stats().hedges_sent, 0);
  EXPECT_EQ(fetcher.stats().queued, 0) << "a hedge must never queue for a permit";
  origin.Answer(0, Value("v"));
  EXPECT_EQ(a.calls, 1);
}

TEST(OriginFetcherTest, FullQueueIsResourceExhaustedWithoutAFetch) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 1, .max_queued = 0}, HedgeOptions{});
  Outcome a, b;
  fetcher.Fetch("a", kNoDeadline, {}, a.fn());
  fetcher.Fetch("b", kNoDeadline, {}, b.fn());
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(b.outcome.end, FetchOutcome::End::kNotSent);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(origin.fetches(), 1u);
  origin.Answer(0, Value("v"));
}

// The one place an origin's exception is caught: the attempt reports INTERNAL and its permit
// comes free, on the caller's thread (primary) as on a timer thread (hedge). Only key "a" throws.
class ThrowingOrigin final : public Origin {
 public:
  explicit ThrowingOrigin(uint32_t throwing_attempt) : throwing_attempt_(throwing_attempt) {}
  void Fetch(const FetchRequest& request, std::stop_token, FetchCallback done) override {
    if (request.key == "a" && request.attempt == throwing_attempt_) {
      throw std::runtime_error("origin bug");
    }
    held.push_back(std::move(done));
  }
  std::string Describe() const override { return "throwing://"; }
  std::vector<FetchCallback> held;

 private:
  const uint32_t throwing_attempt_;
};

TEST(OriginFetcherTest, PrimaryOriginThatThrowsIsInternalAndFreesItsPermit) {
  FakeTimerQueue timers;
  ThrowingOrigin origin(/*throwing_attempt=*/1);
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 1, .max_queued = 10}, Hedging());
  Outcome a, b;
  fetcher.Fetch("a", kNoDeadline, {}, a.fn());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(a.status().message(), HasSubstr("origin bug"));
  EXPECT_EQ(timers.pending(), 0u);
  fetcher.Fetch("b", kNoDeadline, {}, b.fn());
  ASSERT_EQ(origin.held.size(), 1u) << "the throwing call kept its permit";
  origin.held[0](Value("vb"));
  EXPECT_EQ(b.calls, 1);
}

TEST(OriginFetcherTest, HedgeOriginThatThrowsIsAHedgeErrorAndFreesItsPermit) {
  FakeTimerQueue timers;
  ThrowingOrigin origin(/*throwing_attempt=*/2);
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 2, .max_queued = 0}, Hedging());
  Outcome a;
  fetcher.Fetch("a", kNoDeadline, {}, a.fn());
  timers.Advance(kDelay);  // the hedge throws on the timer thread
  EXPECT_EQ(fetcher.stats().hedges_sent, 1);
  EXPECT_EQ(a.calls, 0) << "a hedge error waits for the primary";
  Outcome probe;  // the hedge's permit is free again: another fetch gets the second permit
  fetcher.Fetch("probe", kNoDeadline, {}, probe.fn());
  EXPECT_EQ(probe.calls, 0) << "the throwing hedge kept its permit";
  ASSERT_EQ(origin.held.size(), 2u);
  origin.held[0](absl::UnavailableError("primary down"));
  ASSERT_EQ(a.calls, 1) << "both attempts failed: the fetch must not hang";
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnavailable);
  origin.held[1](Value("p"));
}

TEST(OriginFetcherTest, DeadlineThatStopsTheOriginIsCutByDeadline) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  OriginFetcher fetcher(origin, timers, {.max_concurrent = 1, .max_queued = 0}, HedgeOptions{});
  const absl::Time deadline = timers.clock().Now() + absl::Seconds(1);
  Outcome early, cut;
  fetcher.Fetch("early", deadline, {}, early.fn());
  origin.Answer(0, absl::DeadlineExceededError("origin's own deadline"));  // long before ours
  EXPECT_EQ(early.outcome.end, FetchOutcome::End::kAnswered);
  fetcher.Fetch("cut", deadline, {}, cut.fn());
  timers.Advance(absl::Seconds(1));
  origin.Answer(1, absl::DeadlineExceededError("deadline"));
  EXPECT_EQ(cut.outcome.end, FetchOutcome::End::kCutByDeadline);
  EXPECT_EQ(fetcher.stats().cut_by_deadline, 1);
}

// Runs `fetches` fetches, all queued at once, against a simulated origin that answers in 20 ms up
// to 8 in flight and slows down 4x as fast past it (its throughput falls: 400/s at 8, 300/s at 9,
// 110/s at 64). Returns the answers per second of fake time over the second half of the run.
struct KneeRun {
  double throughput = 0;
  int64_t final_limit = 0;
  int64_t peak_origin_in_flight = 0;
};
KneeRun RunAgainstAKnee(const FetchLimits& limits, int fetches) {
  FakeTimerQueue timers;
  sim::OriginModelOptions model;
  model.latency = sim::LatencyDistribution::Fixed(absl::Milliseconds(20));
  model.overload_threshold = 8;
  model.overload_slope = 4;
  model.seed = 1;
  sim::SimOrigin origin(model, timers);
  OriginFetcher fetcher(origin, timers, limits, HedgeOptions{});
  int answered = 0;
  absl::Time half_start;
  for (int i = 0; i < fetches; ++i) {
    fetcher.Fetch(absl::StrCat("k", i), kNoDeadline, {}, [&](FetchOutcome o) {
      EXPECT_TRUE(o.result.ok()) << o.result.status();
      if (++answered == fetches / 2) half_start = timers.clock().Now();
    });
  }
  KneeRun run;
  for (int step = 0; answered < fetches && step < 1'000'000; ++step) {
    timers.Advance(absl::Milliseconds(1));
  }
  EXPECT_EQ(answered, fetches) << "fetches still unanswered after 1000 s of fake time";
  const absl::Duration second_half = timers.clock().Now() - half_start;
  run.throughput = (fetches - fetches / 2) / absl::ToDoubleSeconds(second_half);
  run.final_limit = fetcher.stats().concurrency_limit;
  run.peak_origin_in_flight = origin.counters().peak_inflight;
  return run;
}

// The test: the adaptive limit settles near the knee of an origin that degrades beyond 8
// concurrent fetches, without being told 8, and keeps its throughput (the best fixed limit, 8,
// gets 400/s; a guess of 64 gets about 110/s).
TEST(OriginFetcherTest, AdaptiveLimitSettlesNearTheOriginsKnee) {
  const KneeRun adaptive = RunAgainstAKnee(
      {.max_queued = 100'000, .adaptive = AdaptiveLimitOptions{.min_limit = 4, .max_limit = 256}},
      6000);
  EXPECT_GE(adaptive.final_limit, 7);
  EXPECT_LE(adaptive.final_limit, 10);
  EXPECT_GE(adaptive.throughput, 0.9 * 400) << "answers per second once settled";
  EXPECT_LE(adaptive.peak_origin_in_flight, 16) << "it never ran far past the knee";

  const KneeRun guessed = RunAgainstAKnee({.max_concurrent = 64, .max_queued = 100'000}, 2000);
  EXPECT_EQ(guessed.final_limit, 64) << "a fixed limit stays fixed";
  EXPECT_LT(guessed.throughput, 0.5 * adaptive.throughput);
}

}  // namespace
}  // namespace flightcache
