// Pitfalls 7 and 8 of docs/DESIGN.md: unbounded fan-out, and hedges that always fire or drop
// errors.
#include <deque>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flightcache/concurrency_limiter.h"
#include "flightcache/hedger.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "internal/origin_fetcher.h"
#include "tests/testing/async_cancel_origin.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

using ::flightcache::testing::AsyncCancelOrigin;
using ::flightcache::testing::FakeTimerQueue;
using ::testing::HasSubstr;
using Permit = ConcurrencyLimiter::Permit;

// Pitfall 7: starting a fetch per load with no bound overwhelms the origin. Every load must pass
// the limiter: at most K fetches at once, the rest wait in FIFO order, and a full queue is a clear
// RESOURCE_EXHAUSTED error rather than more waiting or more fetches.
TEST(PitfallTest, P07UnboundedFanOutIsBoundedByLimiter) {
  constexpr int kPermits = 8;
  constexpr int kLoads = 10000;
  ConcurrencyLimiter limiter(kPermits, /*max_queued=*/kLoads - kPermits);

  struct Fetch {
    int load;
    Permit permit;
  };
  std::deque<Fetch> in_flight;  // the "origin": fetches started and not yet answered
  size_t max_in_flight = 0;
  std::vector<int> started;
  for (int i = 0; i < kLoads; ++i) {
    limiter.Acquire({}, [&, i](absl::StatusOr<Permit> p) {
      ASSERT_TRUE(p.ok()) << "load " << i << ": " << p.status();
      started.push_back(i);
      in_flight.push_back({i, *std::move(p)});
      max_in_flight = std::max(max_in_flight, in_flight.size());
    });
  }
  EXPECT_EQ(in_flight.size(), static_cast<size_t>(kPermits));
  EXPECT_EQ(limiter.queued(), kLoads - kPermits);

  // One load too many: a clear error at once, not another fetch and not an unbounded queue.
  absl::Status overflow;
  int overflow_calls = 0;
  limiter.Acquire({}, [&](absl::StatusOr<Permit> p) {
    ++overflow_calls;
    overflow = p.status();
  });
  ASSERT_EQ(overflow_calls, 1);
  EXPECT_EQ(overflow.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(overflow.message(), HasSubstr("load queue full (9992 queued)"));

  // The origin answers one fetch at a time; each answer lets exactly one queued load start.
  int answered = 0;
  while (!in_flight.empty()) {
    Fetch done = std::move(in_flight.front());
    in_flight.pop_front();
    done.permit.Release();
    ++answered;
  }
  EXPECT_EQ(answered, kLoads);
  EXPECT_EQ(max_in_flight, static_cast<size_t>(kPermits));
  ASSERT_EQ(started.size(), static_cast<size_t>(kLoads));
  for (int i = 0; i < kLoads; ++i) ASSERT_EQ(started[i], i) << "not FIFO";
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.queued(), 0);
}

// An origin whose attempts the test answers by hand.
class ManualOrigin {
 public:
  Hedger::Attempt fn() {
    return [this](uint32_t attempt, std::stop_token cancel, FetchCallback done) {
      calls_.push_back({attempt, std::move(cancel), std::move(done)});
      return true;
    };
  }
  size_t count() const { return calls_.size(); }
  bool cancelled(size_t i) const { return calls_.at(i).cancel.stop_requested(); }
  void Complete(size_t i, absl::StatusOr<FetchResult> r) {
    FetchCallback done = std::move(calls_.at(i).done);
    ASSERT_NE(done, nullptr);
    done(std::move(r));
  }

 private:
  struct Call {
    uint32_t attempt;
    std::stop_token cancel;
    FetchCallback done;
  };
  std::deque<Call> calls_;
};

// Pitfall 8: a hedge implemented as "sleep, then fire" doubles the load, and taking the first
// *result* drops errors. The hedge must fire only when the primary is still out after the delay,
// only within the token budget, and an error must always reach the caller.
TEST(PitfallTest, P08HedgeFiresOnlyAfterDelayWithinBudgetAndKeepsErrors) {
  constexpr absl::Duration kDelay = absl::Milliseconds(20);
  HedgeOptions options;
  options.enabled = true;
  options.delay = kDelay;
  options.budget = 0.05;
  options.max_tokens = 10;
  ASSERT_TRUE(options.Validate().ok());

  {
    SCOPED_TRACE("fast primaries send zero hedges");
    FakeTimerQueue timers;
    Hedger hedger(options, timers);
    for (int i = 0; i < 100; ++i) {
      ManualOrigin origin;
      int done_calls = 0;
      hedger.Run({}, origin.fn(), [&](absl::StatusOr<FetchResult> r) {
        ++done_calls;
        EXPECT_TRUE(r.ok());
      });
      timers.Advance(kDelay - absl::Milliseconds(1));
      origin.Complete(0, FetchResult{"v"});
      ASSERT_EQ(timers.pending(), 0u) << "load " << i << ": the hedge timer outlived the answer";
      timers.Advance(kDelay * 10);
      ASSERT_EQ(origin.count(), 1u) << "load " << i << " hedged a fast primary";
      ASSERT_EQ(done_calls, 1);
    }
    EXPECT_EQ(hedger.stats().hedges_sent, 0);
    EXPECT_EQ(hedger.stats().fetches, 100);
    EXPECT_EQ(timers.pending(), 0u);
  }

  {
    SCOPED_TRACE("slow primaries hedge within budget");
    FakeTimerQueue timers;
    Hedger hedger(options, timers);
    constexpr int kLoads = 200;
    for (int i = 0; i < kLoads; ++i) {
      ManualOrigin origin;
      int done_calls = 0;
      hedger.Run({}, origin.fn(), [&](absl::StatusOr<FetchResult>) { ++done_calls; });
      timers.Advance(kDelay * 2);
      origin.Complete(0, FetchResult{"v"});
      if (origin.count() == 2) origin.Complete(1, absl::CancelledError("stopped"));
      ASSERT_EQ(done_calls, 1);
    }
    const HedgeStats stats = hedger.stats();
    EXPECT_GE(stats.hedges_sent, 10) << "the bucket starts full";
    EXPECT_LE(stats.hedges_sent, 10 + 0.05 * kLoads + 1) << "hedges exceeded the budget";
  }

  {
    SCOPED_TRACE("a hedge counts against the concurrency limit for its whole origin call");
    FakeTimerQueue timers;
    AsyncCancelOrigin origin;  // a cancelled call stays in flight until the origin answers
    OriginFetcher fetcher(origin, timers, {.max_concurrent = 2, .max_queued = 10}, options);
    int done_calls = 0;
    auto count = [&](FetchOutcome) { ++done_calls; };
    fetcher.Fetch("a", absl::InfiniteFuture(), {}, count);
    timers.Advance(kDelay);
    ASSERT_EQ(origin.fetches(), 2u);
    fetcher.Fetch("b", absl::InfiniteFuture(), {}, count);  // waits: both permits in use
    origin.Answer(0, FetchResult{"v"});  // the primary wins; the hedge is told to stop...
    ASSERT_EQ(done_calls, 1);
    ASSERT_TRUE(origin.cancel_seen(1));
    EXPECT_EQ(origin.max_in_flight(), 2) << "...but the origin still works on it";
    origin.Answer(1, absl::CancelledError("stopped"));
    ASSERT_EQ(origin.fetches(), 3u) << "b starts once the hedge's call has ended";
    origin.Answer(2, FetchResult{"v"});
    EXPECT_EQ(done_calls, 2);

    // No free permit: no hedge, and it does not queue for one.
    AsyncCancelOrigin slow;
    OriginFetcher starved(slow, timers, {.max_concurrent = 1, .max_queued = 10}, options);
    starved.Fetch("s", absl::InfiniteFuture(), {}, count);
    timers.Advance(kDelay * 10);
    EXPECT_EQ(slow.fetches(), 1u) << "a hedge was sent without a permit";
    EXPECT_EQ(starved.stats().queued, 0);
    slow.Answer(0, FetchResult{"v"});
    EXPECT_EQ(done_calls, 3);
  }

  {
    SCOPED_TRACE("errors are returned, never swallowed");
    FakeTimerQueue timers;
    Hedger hedger(options, timers);
    // Both attempts fail: the primary's error is the result, not silence and not a hang.
    ManualOrigin origin;
    std::optional<absl::StatusOr<FetchResult>> result;
    hedger.Run({}, origin.fn(), [&](absl::StatusOr<FetchResult> r) { result = std::move(r); });
    timers.Advance(kDelay);
    ASSERT_EQ(origin.count(), 2u);
    origin.Complete(1, absl::InternalError("hedge failed"));
    EXPECT_FALSE(result.has_value()) << "one error must wait for the other attempt";
    origin.Complete(0, absl::UnavailableError("origin unreachable"));
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(result->status().message(), HasSubstr("origin unreachable"));

    // A primary error with no hedge out is returned at once.
    ManualOrigin lone;
    std::optional<absl::StatusOr<FetchResult>> lone_result;
    hedger.Run({}, lone.fn(), [&](absl::StatusOr<FetchResult> r) { lone_result = std::move(r); });
    lone.Complete(0, absl::UnavailableError("refused"));
    ASSERT_TRUE(lone_result.has_value());
    EXPECT_EQ(lone_result->status().code(), absl::StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace flightcache
