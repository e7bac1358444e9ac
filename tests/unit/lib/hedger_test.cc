#include "flightcache/hedger.h"

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/concurrency_limiter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

using ::flightcache::testing::FakeTimerQueue;
using ::testing::HasSubstr;

// A controllable origin for one or more runs: records every attempt and lets the test finish
// attempt i with a chosen result.
class FakeAttempts {
 public:
  Hedger::Attempt fn() {
    return [this](uint32_t attempt, std::stop_token cancel, FetchCallback done) {
      absl::MutexLock lock(&mu_);
      calls_.push_back({attempt, std::move(cancel), std::move(done)});
      return true;
    };
  }

  size_t count() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  uint32_t attempt(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i).attempt;
  }
  bool cancelled(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i).cancel.stop_requested();
  }

  // Runs attempt i's callback with `result`. REQUIRES: not completed before.
  void Complete(size_t i, absl::StatusOr<FetchResult> result) {
    FetchCallback done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(calls_.at(i).done);
    }
    ASSERT_NE(done, nullptr) << "attempt " << i << " completed twice";
    done(std::move(result));
  }

 private:
  struct Call {
    uint32_t attempt;
    std::stop_token cancel;
    FetchCallback done;
  };
  mutable absl::Mutex mu_;
  std::deque<Call> calls_ ABSL_GUARDED_BY(mu_);
};

// Records Run()'s `done`; fails the test on a second call.
struct DoneRecorder {
  int calls = 0;
  absl::StatusOr<FetchResult> result = absl::UnknownError("done not called");

  FetchCallback fn() {
    return [this](absl::StatusOr<FetchResult> r) {
      ++calls;
      EXPECT_EQ(calls, 1) << "done called more than once";
      result = std::move(r);
    };
  }
};

FetchResult Value(std::string v) { return FetchResult{std::move(v), absl::ZeroDuration()}; }

HedgeOptions FixedDelay(absl::Duration delay) {
  HedgeOptions o;
  o.enabled = true;
  o.delay = delay;
  return o;
}

constexpr absl::Duration kDelay = absl::Milliseconds(20);

TEST(HedgerTest, FastPrimarySendsNoHedgeAndCancelsTimer) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  ASSERT_EQ(origin.count(), 1u);
  EXPECT_EQ(origin.attempt(0), 1u);
  EXPECT_EQ(timers.pending(), 1u);  // the hedge timer

  timers.Advance(absl::Milliseconds(5));
  origin.Complete(0, Value("v"));
  ASSERT_EQ(done.calls, 1);
  ASSERT_TRUE(done.result.ok());
  EXPECT_EQ(done.result->value, "v");
  EXPECT_EQ(timers.pending(), 0u) << "hedge timer not cancelled";

  timers.Advance(absl::Seconds(1));
  EXPECT_EQ(origin.count(), 1u);
  const HedgeStats stats = hedger.stats();
  EXPECT_EQ(stats.fetches, 1);
  EXPECT_EQ(stats.hedges_sent, 0);
  EXPECT_EQ(stats.hedges_won, 0);
}

TEST(HedgerTest, InlinePrimaryAnswerLeavesNoTimer) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  DoneRecorder done;
  hedger.Run(
      {},
      [](uint32_t, std::stop_token, FetchCallback cb) {
        cb(Value("now"));
        return true;
      },
      done.fn());
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(timers.pending(), 0u);
  EXPECT_EQ(hedger.stats().hedges_sent, 0);
}

TEST(HedgerTest, HedgeFiresOnlyAfterDelay) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(kDelay - absl::Milliseconds(1));
  EXPECT_EQ(origin.count(), 1u) << "hedged before the delay";
  timers.Advance(absl::Milliseconds(1));
  ASSERT_EQ(origin.count(), 2u) << "no hedge at the delay";
  EXPECT_EQ(origin.attempt(1), 2u);
  EXPECT_EQ(done.calls, 0);
  EXPECT_EQ(hedger.stats().hedges_sent, 1);
  EXPECT_EQ(hedger.stats().fetches, 2);
  timers.Advance(absl::Seconds(10));
  EXPECT_EQ(origin.count(), 2u) << "at most one hedge per run";
}

TEST(HedgerTest, HedgeAnswerWinsAndCancelsPrimary) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(kDelay);
  ASSERT_EQ(origin.count(), 2u);

  origin.Complete(1, Value("from hedge"));
  ASSERT_EQ(done.calls, 1);
  ASSERT_TRUE(done.result.ok());
  EXPECT_EQ(done.result->value, "from hedge");
  EXPECT_TRUE(origin.cancelled(0)) << "the losing primary must be cancelled";
  EXPECT_FALSE(origin.cancelled(1));
  EXPECT_EQ(hedger.stats().hedges_won, 1);

  origin.Complete(0, absl::CancelledError("primary stopped"));  // the late loser is ignored
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(done.result->value, "from hedge");
}

TEST(HedgerTest, PrimaryAnswerAfterHedgeSentWinsAndCancelsHedge) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(kDelay);
  ASSERT_EQ(origin.count(), 2u);
  origin.Complete(0, Value("from primary"));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result->value, "from primary");
  EXPECT_TRUE(origin.cancelled(1));
  EXPECT_EQ(hedger.stats().hedges_won, 0);
  origin.Complete(1, Value("late hedge"));
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(done.result->value, "from primary");
  EXPECT_EQ(hedger.stats().hedges_won, 0);
}

TEST(HedgerTest, PrimaryErrorWaitsForHedge) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(kDelay);
  ASSERT_EQ(origin.count(), 2u);
  origin.Complete(0, absl::UnavailableError("primary down"));
  EXPECT_EQ(done.calls, 0) << "an error must wait for the hedge in flight";
  EXPECT_FALSE(origin.cancelled(1));
  origin.Complete(1, Value("from hedge"));
  ASSERT_EQ(done.calls, 1);
  ASSERT_TRUE(done.result.ok()) << done.result.status();
  EXPECT_EQ(done.result->value, "from hedge");
  EXPECT_EQ(hedger.stats().hedges_won, 1);
}

TEST(HedgerTest, HedgeErrorWaitsForPrimary) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(kDelay);
  origin.Complete(1, absl::InternalError("hedge broke"));
  EXPECT_EQ(done.calls, 0);
  EXPECT_FALSE(origin.cancelled(0));
  origin.Complete(0, Value("from primary"));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result->value, "from primary");
  EXPECT_EQ(hedger.stats().hedges_won, 0);
}

TEST(HedgerTest, BothFailedDeliversPrimaryErrorWhicheverFailsFirst) {
  for (bool primary_first : {true, false}) {
    SCOPED_TRACE(primary_first ? "primary fails first" : "hedge fails first");
    FakeTimerQueue timers;
    Hedger hedger(FixedDelay(kDelay), timers);
    FakeAttempts origin;
    DoneRecorder done;
    hedger.Run({}, origin.fn(), done.fn());
    timers.Advance(kDelay);
    ASSERT_EQ(origin.count(), 2u);
    if (primary_first) {
      origin.Complete(0, absl::UnavailableError("primary down"));
      EXPECT_EQ(done.calls, 0);
      origin.Complete(1, absl::DeadlineExceededError("hedge slow"));
    } else {
      origin.Complete(1, absl::DeadlineExceededError("hedge slow"));
      EXPECT_EQ(done.calls, 0);
      origin.Complete(0, absl::UnavailableError("primary down"));
    }
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.result.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(done.result.status().message(), HasSubstr("primary down"));
    EXPECT_EQ(hedger.stats().hedges_won, 0);
  }
}

TEST(HedgerTest, PrimaryErrorBeforeDelayIsDeliveredAtOnce) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  origin.Complete(0, absl::UnavailableError("refused"));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(timers.pending(), 0u);
  timers.Advance(absl::Seconds(1));
  EXPECT_EQ(origin.count(), 1u);
  EXPECT_EQ(hedger.stats().hedges_sent, 0);
}

TEST(HedgerTest, NotFoundIsAnAnswer) {
  {
    SCOPED_TRACE("primary NOT_FOUND while the hedge is out");
    FakeTimerQueue timers;
    Hedger hedger(FixedDelay(kDelay), timers);
    FakeAttempts origin;
    DoneRecorder done;
    hedger.Run({}, origin.fn(), done.fn());
    timers.Advance(kDelay);
    origin.Complete(0, absl::NotFoundError("no such key"));
    ASSERT_EQ(done.calls, 1) << "NOT_FOUND must not wait for the hedge";
    EXPECT_EQ(done.result.status().code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(origin.cancelled(1));
  }
  {
    SCOPED_TRACE("hedge NOT_FOUND wins");
    FakeTimerQueue timers;
    Hedger hedger(FixedDelay(kDelay), timers);
    FakeAttempts origin;
    DoneRecorder done;
    hedger.Run({}, origin.fn(), done.fn());
    timers.Advance(kDelay);
    origin.Complete(1, absl::NotFoundError("no such key"));
    ASSERT_EQ(done.calls, 1);
    EXPECT_EQ(done.result.status().code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(origin.cancelled(0));
    EXPECT_EQ(hedger.stats().hedges_won, 1);
  }
}

// Runs one load whose primary answers after `latency` (a hedge, if any, is left unanswered).
void RunLoad(Hedger& hedger, FakeTimerQueue& timers, absl::Duration latency) {
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(latency);
  origin.Complete(0, Value("v"));
  ASSERT_EQ(done.calls, 1);
  if (origin.count() == 2) origin.Complete(1, absl::CancelledError("hedge cancelled"));
}

TEST(HedgerTest, BudgetBucketStartsFullThenCapsHedges) {
  FakeTimerQueue timers;
  HedgeOptions options = FixedDelay(kDelay);
  options.budget = 0.05;
  options.max_tokens = 10;
  Hedger hedger(options, timers);
  EXPECT_DOUBLE_EQ(hedger.tokens(), 10);
  constexpr int kLoads = 200;
  for (int i = 0; i < kLoads; ++i) {
    RunLoad(hedger, timers, kDelay + absl::Milliseconds(5));  // every primary is slow
    if (i < 10) {
      ASSERT_EQ(hedger.stats().hedges_sent, i + 1) << "the bucket starts full: load " << i;
    }
  }
  const HedgeStats stats = hedger.stats();
  EXPECT_LE(stats.hedges_sent, 10 + 0.05 * kLoads + 1);
  EXPECT_GT(stats.hedges_sent, 10) << "earned tokens must pay for later hedges";
  EXPECT_EQ(stats.fetches, kLoads + stats.hedges_sent);
  EXPECT_LE(hedger.tokens(), 10);
}

TEST(HedgerTest, ZeroBudgetSpendsOnlyTheInitialBucket) {
  FakeTimerQueue timers;
  HedgeOptions options = FixedDelay(kDelay);
  options.budget = 0;
  options.max_tokens = 3;
  Hedger hedger(options, timers);
  for (int i = 0; i < 20; ++i) RunLoad(hedger, timers, absl::Milliseconds(50));
  EXPECT_EQ(hedger.stats().hedges_sent, 3);
  EXPECT_EQ(hedger.stats().fetches, 23);
}

TEST(HedgerTest, RefusedHedgeIsNotSentAndSpendsNoToken) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  Hedger::Attempt record = origin.fn();
  DoneRecorder done;
  hedger.Run(
      {},
      [record](uint32_t n, std::stop_token cancel, FetchCallback cb) {
        return n == 1 && record(n, std::move(cancel), std::move(cb));  // no room for a hedge
      },
      done.fn());
  timers.Advance(kDelay * 3);
  EXPECT_EQ(origin.count(), 1u);
  EXPECT_EQ(hedger.stats().hedges_sent, 0);
  EXPECT_EQ(hedger.stats().fetches, 1);
  EXPECT_DOUBLE_EQ(hedger.tokens(), 10);
  origin.Complete(0, absl::UnavailableError("down"));
  ASSERT_EQ(done.calls, 1) << "a primary error with no hedge out is the result at once";
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kUnavailable);
}

TEST(HedgerTest, AdaptiveDelayIsThePercentileOfRecentPrimaryLatencies) {
  FakeTimerQueue timers;
  HedgeOptions options;
  options.enabled = true;
  options.percentile = 50;
  options.min_samples = 4;
  options.window_size = 4;
  options.adaptive_fallback_delay = absl::Milliseconds(300);
  ASSERT_TRUE(options.Validate().ok());
  Hedger hedger(options, timers);
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(300));
  for (int ms : {10, 20, 30}) RunLoad(hedger, timers, absl::Milliseconds(ms));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(300)) << "below min_samples";
  RunLoad(hedger, timers, absl::Milliseconds(40));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(20));  // p50 of {10,20,30,40}
  RunLoad(hedger, timers, absl::Milliseconds(50));           // the window slides: 10 drops out
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(30));  // p50 of {20,30,40,50}
  // Only the 50 ms load outlived its delay (20 ms by then); the fallback covered the others.
  EXPECT_EQ(hedger.stats().hedges_sent, 1);

  // The adaptive delay arms the timer.
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  timers.Advance(absl::Milliseconds(29));
  EXPECT_EQ(origin.count(), 1u);
  timers.Advance(absl::Milliseconds(1));
  ASSERT_EQ(origin.count(), 2u);
  // The hedge wins at 30 ms: the beaten primary is a censored 30 ms sample; its late CANCELLED
  // is not a second one.
  origin.Complete(1, Value("h"));
  timers.Advance(absl::Seconds(5));
  origin.Complete(0, absl::CancelledError("stopped"));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(30));  // p50 of {30,40,50,30}
}

// Primaries beaten by their hedge are the slow tail; left out of the window, the "p90" would
// stay at the fast primaries' latency and hedge ever more loads.
TEST(HedgerTest, BeatenPrimariesCountAsCensoredLatencies) {
  FakeTimerQueue timers;
  HedgeOptions options;
  options.enabled = true;
  options.percentile = 90;
  options.min_samples = 10;
  options.window_size = 100;
  options.budget = 1;  // every primary pays for a hedge: the budget is not under test
  Hedger hedger(options, timers);
  for (int i = 0; i < 10; ++i) RunLoad(hedger, timers, absl::Milliseconds(10));
  ASSERT_EQ(hedger.CurrentDelay(), absl::Milliseconds(10));
  // Ten loads whose primary hangs: each hedge fires at the delay then answers 50 ms later.
  for (int i = 0; i < 10; ++i) {
    FakeAttempts origin;
    DoneRecorder done;
    const absl::Duration delay = hedger.CurrentDelay();
    hedger.Run({}, origin.fn(), done.fn());
    timers.Advance(delay);
    ASSERT_EQ(origin.count(), 2u) << "load " << i;
    timers.Advance(absl::Milliseconds(50));
    origin.Complete(1, Value("h"));
    ASSERT_TRUE(origin.cancelled(0));
    origin.Complete(0, absl::CancelledError("stopped"));
  }
  // Half the window is now primaries that took at least 60 ms.
  EXPECT_GE(hedger.CurrentDelay(), absl::Milliseconds(60));
}

TEST(HedgerTest, AdaptiveP95) {
  FakeTimerQueue timers;
  HedgeOptions options;
  options.enabled = true;
  options.percentile = 95;
  options.min_samples = 20;
  options.window_size = 100;
  options.adaptive_fallback_delay = absl::Seconds(1);
  Hedger hedger(options, timers);
  for (int ms = 1; ms <= 19; ++ms) RunLoad(hedger, timers, absl::Milliseconds(ms));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Seconds(1));
  RunLoad(hedger, timers, absl::Milliseconds(20));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(19));  // nearest rank ceil(0.95*20) = 19
  for (int ms = 21; ms <= 100; ++ms) RunLoad(hedger, timers, absl::Milliseconds(ms));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(95));
  for (int i = 0; i < 100; ++i) RunLoad(hedger, timers, absl::Milliseconds(7));
  EXPECT_EQ(hedger.CurrentDelay(), absl::Milliseconds(7)) << "old samples must leave the window";
}

TEST(HedgerTest, RunCancelCancelsBothAttemptsAndDeliversCancelledOnce) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  std::stop_source stop;
  hedger.Run(stop.get_token(), origin.fn(), done.fn());
  timers.Advance(kDelay);
  ASSERT_EQ(origin.count(), 2u);
  stop.request_stop();
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(origin.cancelled(0));
  EXPECT_TRUE(origin.cancelled(1));
  origin.Complete(0, absl::CancelledError("stopped"));
  origin.Complete(1, Value("too late"));
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(hedger.stats().hedges_won, 0);
}

TEST(HedgerTest, RunCancelBeforeTheDelayCancelsTheTimer) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  std::stop_source stop;
  hedger.Run(stop.get_token(), origin.fn(), done.fn());
  stop.request_stop();
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(origin.cancelled(0));
  EXPECT_EQ(timers.pending(), 0u);
  timers.Advance(absl::Seconds(1));
  EXPECT_EQ(origin.count(), 1u);
  origin.Complete(0, absl::CancelledError("stopped"));
  EXPECT_EQ(done.calls, 1);
}

TEST(HedgerTest, RunCancelAfterDeliveryChangesNothing) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  std::stop_source stop;
  hedger.Run(stop.get_token(), origin.fn(), done.fn());
  origin.Complete(0, Value("v"));
  stop.request_stop();
  ASSERT_EQ(done.calls, 1);
  EXPECT_TRUE(done.result.ok());
}

TEST(HedgerTest, StoppedTokenStartsNoFetch) {
  FakeTimerQueue timers;
  Hedger hedger(FixedDelay(kDelay), timers);
  FakeAttempts origin;
  DoneRecorder done;
  std::stop_source stop;
  stop.request_stop();
  hedger.Run(stop.get_token(), origin.fn(), done.fn());
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(origin.count(), 0u);
  EXPECT_EQ(hedger.stats().fetches, 0);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(HedgerTest, DisabledNeverHedges) {
  FakeTimerQueue timers;
  HedgeOptions options = FixedDelay(kDelay);
  options.enabled = false;
  Hedger hedger(options, timers);
  FakeAttempts origin;
  DoneRecorder done;
  hedger.Run({}, origin.fn(), done.fn());
  EXPECT_EQ(timers.pending(), 0u);
  timers.Advance(absl::Seconds(1));
  EXPECT_EQ(origin.count(), 1u);
  origin.Complete(0, absl::UnavailableError("down"));
  ASSERT_EQ(done.calls, 1);
  EXPECT_EQ(done.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(hedger.stats().fetches, 1);
}

TEST(HedgerTest, ValidateRejectsBadOptions) {
  EXPECT_TRUE(HedgeOptions{}.Validate().ok());
  auto invalid = [](auto mutate) {
    HedgeOptions o;
    o.enabled = true;
    mutate(o);
    return o.Validate().code() == absl::StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.budget = -0.1; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.budget = 1.5; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.delay = absl::ZeroDuration(); }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.percentile = 100; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.percentile = -1; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.window_size = 0; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.min_samples = 0; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.min_samples = o.window_size + 1; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.max_tokens = 0.5; }));
  EXPECT_TRUE(invalid([](HedgeOptions& o) { o.adaptive_fallback_delay = -absl::Seconds(1); }));
  EXPECT_FALSE(invalid([](HedgeOptions& o) {
    o.percentile = 99.9;
    o.budget = 1;
  }));
  HedgeOptions bad;
  bad.budget = 2;
  EXPECT_THAT(bad.Validate().message(), HasSubstr("budget"));
}

// Many runs on real threads: origin completions, hedge timers and cancellations race. Checks
// only invariants (no timing): `done` exactly once per run, no permit leaked, counts add up.
TEST(HedgerTest, ConcurrentRunsDeliverExactlyOnce) {
  constexpr int kThreads = 2;
  constexpr int kRunsPerThread = 500;
  constexpr int kRuns = kThreads * kRunsPerThread;
  // Destroyed explicitly at the end: joining its thread is what makes the runs quiescent.
  auto timers = std::make_unique<ThreadTimerQueue>();
  ConcurrencyLimiter limiter(4, 0);  // hedge permits only: the test's primaries hold none
  HedgeOptions options = FixedDelay(absl::Microseconds(200));
  options.budget = 1;
  Hedger hedger(options, *timers);

  std::atomic<int> primaries_started{0};
  std::atomic<int> attempts_started{0};
  std::atomic<int> attempts_finished{0};
  std::vector<std::atomic<int>> done_calls(kRuns);
  testing::Latch all_done(kRuns);

  // Answers after 0-600us on the timer thread; reports CANCELLED if cancelled by then.
  auto attempt_for = [&](int run) -> Hedger::Attempt {
    return [&, run, tq = timers.get()](uint32_t attempt, std::stop_token cancel, FetchCallback cb) {
      // A hedge runs under a permit taken now (none free: refused), held until it reports.
      std::optional<ConcurrencyLimiter::Permit> permit;
      if (attempt == 2 && !(permit = limiter.TryAcquire()).has_value()) return false;
      attempts_started.fetch_add(1);
      if (attempt == 1) primaries_started.fetch_add(1);
      const uint32_t dice = static_cast<uint32_t>(run * 31 + attempt) * 2654435761u >> 7;
      auto finish = [&, dice, cancel = std::move(cancel), cb = std::move(cb),
                     permit = std::move(permit)]() mutable {
        permit.reset();
        if (cancel.stop_requested()) {
          cb(absl::CancelledError("stopped"));
        } else if (dice % 5 == 0) {
          cb(absl::UnavailableError("flaky"));
        } else if (dice % 7 == 0) {
          cb(absl::NotFoundError("missing"));
        } else {
          cb(Value("v"));
        }
        attempts_finished.fetch_add(1);
      };
      if (dice % 11 == 0) {
        finish();  // inline
      } else {
        tq->RunAfter(absl::Microseconds(dice % 600), std::move(finish));
      }
      return true;
    };
  };

  std::vector<std::stop_source> stops(kRuns);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(99 + t);
      for (int i = 0; i < kRunsPerThread; ++i) {
        const int run = t * kRunsPerThread + i;
        hedger.Run(stops[run].get_token(), attempt_for(run),
                   [&, run](absl::StatusOr<FetchResult> r) {
                     EXPECT_EQ(done_calls[run].fetch_add(1), 0) << "run " << run;
                     all_done.CountDown();
                   });
        if (rng() % 8 == 0) stops[t * kRunsPerThread + rng() % (i + 1)].request_stop();
        if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(all_done.WaitFor()) << "a run never delivered";
  // A run still uses the hedger until its losing attempt has reported: let the attempts end
  // (cancelled ones report CANCELLED), then stop the timer thread so nothing runs any more.
  const absl::Time give_up = absl::Now() + testing::kTestWait;
  while (attempts_finished.load() < attempts_started.load() && absl::Now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(attempts_finished.load(), attempts_started.load()) << "an attempt never reported";
  timers.reset();
  for (int i = 0; i < kRuns; ++i) ASSERT_EQ(done_calls[i].load(), 1) << "run " << i;
  const HedgeStats stats = hedger.stats();
  EXPECT_EQ(stats.fetches, attempts_started.load());
  EXPECT_EQ(stats.fetches, primaries_started.load() + stats.hedges_sent);
  EXPECT_GT(stats.hedges_sent, 0);
  EXPECT_LE(stats.hedges_won, stats.hedges_sent);
  EXPECT_EQ(limiter.in_use(), 0) << "a hedge permit leaked";
}

}  // namespace
}  // namespace flightcache
