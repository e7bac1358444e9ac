#include "client/loadgen/runner.h"

#include <array>
#include <deque>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace flightcache::loadgen {
namespace {

using flightcache::testing::FakeTimerQueue;

// A Target whose behaviour each test chooses: answer inline, hold calls until the test answers
// them, and run a hook at each Start() (e.g. to stall the sender by moving the fake clock).
class FakeTarget final : public Target {
 public:
  struct Call {
    CallSpec spec;
    CallDone done;
  };

  bool answer_inline = true;
  std::function<void(int call_index, const CallSpec&)> on_start;

  void Start(CallSpec call, CallDone done) override {
    int index;
    {
      absl::MutexLock lock(&mu_);
      index = started_++;
      keys_.push_back(call.keys);
      kinds_.push_back(call.kind);
      deadlines_.push_back(call.deadline);
    }
    if (on_start) on_start(index, call);
    if (answer_inline) {
      done(std::vector<ItemResult>(call.keys.size(), {absl::StatusCode::kOk, Source::kHit}));
      return;
    }
    absl::MutexLock lock(&mu_);
    held_.push_back({std::move(call), std::move(done)});
  }

  // Answers the oldest held call; false if none is held.
  bool AnswerOne(absl::StatusCode code = absl::StatusCode::kOk) {
    Call call;
    {
      absl::MutexLock lock(&mu_);
      if (held_.empty()) return false;
      call = std::move(held_.front());
      held_.pop_front();
    }
    call.done(std::vector<ItemResult>(call.spec.keys.size(), {code, Source::kLoaded}));
    return true;
  }

  int started() const {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  size_t held() const {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  std::vector<std::vector<std::string>> keys() const {
    absl::MutexLock lock(&mu_);
    return keys_;
  }
  std::vector<CallKind> kinds() const {
    absl::MutexLock lock(&mu_);
    return kinds_;
  }
  std::vector<absl::Duration> deadlines() const {
    absl::MutexLock lock(&mu_);
    return deadlines_;
  }

 private:
  mutable absl::Mutex mu_;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Call> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> keys_ ABSL_GUARDED_BY(mu_);
  std::vector<CallKind> kinds_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> deadlines_ ABSL_GUARDED_BY(mu_);
};

WorkloadOptions SmallWorkload(int batch = 1) {
  WorkloadOptions w;
  w.num_keys = 100;
  w.batch_size = batch;
  w.batch_share = batch > 1 ? 1 : 0;  // every call a BatchGet, as --batch=N alone
  return w;
}

uint64_t Ms(double ms) { return static_cast<uint64_t>(ms * 1e6); }

// Within the histogram's 1% precision.
void ExpectQuantileNear(const Histogram& h, double q, double expected_ms) {
  EXPECT_NEAR(static_cast<double>(h.ValueAtQuantile(q)), expected_ms * 1e6,
              0.01 * expected_ms * 1e6 + 1)
      << "q=" << q;
}

TEST(RunnerTest, OpenLoopLatencyIncludesTheTimeASendWasHeldBack) {
  // 100 calls/s for 1 s: calls scheduled at 0, 10, ..., 990 ms. The target answers at once,
  // but sending call 0 stalls the sender for 300 ms (a blocked socket, a GC pause). Calls 1..29
  // therefore leave late, all at t=300 ms. Measured from the actual send they would look
  // instant (coordinated omission); from the schedule, call i waited 300 - 10i ms.
  FakeTimerQueue timers;
  FakeTarget target;
  target.on_start = [&](int index, const CallSpec&) {
    if (index == 0) timers.fake_clock().Advance(absl::Milliseconds(300));
  };
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.mode = LoopMode::kOpen;
  options.rate = 100;
  options.duration = absl::Seconds(1);
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  timers.Advance(absl::Seconds(2));
  const RunResult result = runner.Wait();

  EXPECT_EQ(target.started(), 100);
  const RunTotals totals = recorder.Totals();
  ASSERT_EQ(totals.calls, 100);
  EXPECT_EQ(totals.latency_ns.max(), Ms(300));
  // 21 calls (i = 0..20) waited at least 100 ms; with coordinated omission only call 0 would.
  int64_t at_least_100ms = 0;
  for (int i = 0; i < 30; ++i) at_least_100ms += (300 - 10 * i) >= 100;
  EXPECT_EQ(at_least_100ms, 21);
  ExpectQuantileNear(totals.latency_ns, 0.80, 100);  // rank 80 from the top = i = 20
  ExpectQuantileNear(totals.latency_ns, 0.90, 200);
  ExpectQuantileNear(totals.latency_ns, 0.70, 0);
  EXPECT_EQ(result.late_sends, 29);
  EXPECT_EQ(result.max_send_lag, absl::Milliseconds(290));
  EXPECT_EQ(result.calls_sent, 100);
}

TEST(RunnerTest, OpenLoopInflightCapDelaysSendsAndTheWaitCountsAsLatency) {
  // 100 calls/s for 100 ms, at most 1 in flight, each answered 50 ms after it is sent: call k
  // leaves at 50k ms, answers at 50(k+1) ms, and was scheduled at 10k ms -> 50 + 40k ms.
  FakeTimerQueue timers;
  FakeTarget target;
  target.answer_inline = false;
  target.on_start = [&](int, const CallSpec&) {
    timers.RunAfter(absl::Milliseconds(50), [&] { target.AnswerOne(); });
  };
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.mode = LoopMode::kOpen;
  options.rate = 100;
  options.duration = absl::Milliseconds(100);
  options.max_inflight = 1;
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  timers.Advance(absl::Seconds(1));
  const RunResult result = runner.Wait();

  const RunTotals totals = recorder.Totals();
  ASSERT_EQ(totals.calls, 10);
  EXPECT_EQ(totals.latency_ns.min(), Ms(50));
  EXPECT_EQ(totals.latency_ns.max(), Ms(50 + 40 * 9));
  ExpectQuantileNear(totals.latency_ns, 0.5, 50 + 40 * 4);
  EXPECT_EQ(result.late_sends, 9);
  EXPECT_EQ(result.elapsed, absl::Milliseconds(500));
}

TEST(RunnerTest, OpenLoopSendsOnScheduleWhileTheTargetIsSlow) {
  // The target holds every call: an open loop must keep sending anyway.
  FakeTimerQueue timers;
  FakeTarget target;
  target.answer_inline = false;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.mode = LoopMode::kOpen;
  options.rate = 1000;
  options.duration = absl::Milliseconds(100);
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  timers.Advance(absl::Milliseconds(50));
  EXPECT_EQ(target.started(), 51);  // t = 0, 1, ..., 50 ms
  EXPECT_EQ(runner.inflight(), 51);
  timers.Advance(absl::Milliseconds(100));
  EXPECT_EQ(target.started(), 100);
  while (target.AnswerOne()) {
  }
  runner.Wait();
  EXPECT_EQ(recorder.Totals().calls, 100);
  EXPECT_EQ(runner.inflight(), 0);
}

TEST(RunnerTest, OpenLoopStopsAtMaxRequests) {
  FakeTimerQueue timers;
  FakeTarget target;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.mode = LoopMode::kOpen;
  options.rate = 1000;
  options.poisson_arrivals = true;
  options.duration = absl::InfiniteDuration();
  options.max_requests = 250;
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  timers.Advance(absl::Seconds(10));
  runner.Wait();
  EXPECT_EQ(target.started(), 250);
  EXPECT_EQ(recorder.Totals().calls, 250);
}

TEST(RunnerTest, ClosedLoopWithInlineAnswersSendsExactlyMaxRequestsWithoutRecursing) {
  // Inline answers would recurse once per call without the trampoline; 20000 calls on one
  // stack would overflow it.
  FakeTimerQueue timers;
  FakeTarget target;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.concurrency = 4;
  options.duration = absl::InfiniteDuration();
  options.max_requests = 20000;
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  runner.Wait();
  EXPECT_EQ(target.started(), 20000);
  EXPECT_EQ(recorder.Totals().calls, 20000);
}

TEST(RunnerTest, ClosedLoopKeepsConcurrencyCallsInFlight) {
  FakeTimerQueue timers;
  FakeTarget target;
  target.answer_inline = false;
  Workload workload(SmallWorkload(/*batch=*/3));
  LatencyRecorder recorder;
  RunnerOptions options;
  options.concurrency = 3;
  options.max_requests = 10;
  options.duration = absl::InfiniteDuration();
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  EXPECT_EQ(target.held(), 3u);
  timers.fake_clock().Advance(absl::Milliseconds(7));
  ASSERT_TRUE(target.AnswerOne());
  EXPECT_EQ(target.held(), 3u);  // the answer sent the next call at once
  EXPECT_EQ(target.started(), 4);
  int answered = 1;
  while (target.AnswerOne()) ++answered;
  runner.Wait();
  EXPECT_EQ(answered, 10);
  const RunTotals totals = recorder.Totals();
  EXPECT_EQ(totals.calls, 10);
  EXPECT_EQ(totals.items, 30);  // BatchGet of 3 keys each
  EXPECT_EQ(totals.latency_ns.max(), Ms(7));
  for (const auto& keys : target.keys()) EXPECT_EQ(keys.size(), 3u);
}

TEST(RunnerTest, ClosedLoopAnsweredFromOtherThreadsSendsExactlyMaxRequests) {
  // Answers race with Start() returning: the trampoline must neither lose nor double a call.
  ThreadTimerQueue timers;
  FakeTarget target;
  target.answer_inline = false;
  std::vector<std::thread> answerers;
  std::atomic<bool> done{false};
  for (int i = 0; i < 3; ++i) {
    answerers.emplace_back([&] {
      while (!done.load()) {
        if (!target.AnswerOne()) std::this_thread::yield();
      }
    });
  }
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.concurrency = 8;
  options.max_requests = 5000;
  options.duration = absl::InfiniteDuration();
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  runner.Wait();
  done.store(true);
  for (std::thread& t : answerers) t.join();
  EXPECT_EQ(target.started(), 5000);
  EXPECT_EQ(recorder.Totals().calls, 5000);
}

TEST(RunnerTest, StopEndsAnUnlimitedClosedLoop) {
  FakeTimerQueue timers;
  FakeTarget target;
  target.answer_inline = false;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.concurrency = 5;
  options.duration = absl::InfiniteDuration();
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  runner.Stop();
  while (target.AnswerOne()) {
  }
  runner.Wait();
  EXPECT_EQ(target.started(), 5);
  EXPECT_EQ(recorder.Totals().calls, 5);
}

TEST(RunnerTest, StopWakesASlowOpenLoop) {
  FakeTimerQueue timers;
  FakeTarget target;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.mode = LoopMode::kOpen;
  options.rate = 0.001;  // one call, then the next in 1000 s
  options.duration = absl::InfiniteDuration();
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  timers.Advance(absl::ZeroDuration());
  EXPECT_EQ(target.started(), 1);
  runner.Stop();
  timers.Advance(absl::ZeroDuration());
  runner.Wait();
  EXPECT_EQ(target.started(), 1);
}

TEST(RunnerTest, HerdSendsWavesOfCallersForOneFreshKey) {
  FakeTimerQueue timers;
  FakeTarget target;
  target.answer_inline = false;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.mode = LoopMode::kHerd;
  options.herd_size = 20;
  options.waves = 3;
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  std::set<std::string> wave_keys;
  for (int wave = 0; wave < 3; ++wave) {
    timers.Advance(absl::ZeroDuration());
    ASSERT_EQ(target.held(), 20u) << "wave " << wave;  // all callers at once, none early
    const auto keys = target.keys();
    const std::string key = keys.back().front();
    for (size_t i = keys.size() - 20; i < keys.size(); ++i) EXPECT_EQ(keys[i].front(), key);
    wave_keys.insert(key);
    timers.fake_clock().Advance(absl::Milliseconds(10));
    while (target.AnswerOne()) {
    }
  }
  timers.Advance(absl::ZeroDuration());
  runner.Wait();
  EXPECT_EQ(wave_keys.size(), 3u);  // a fresh key each wave
  EXPECT_EQ(target.started(), 60);
  const RunTotals totals = recorder.Totals();
  EXPECT_EQ(totals.calls, 60);
  EXPECT_EQ(totals.latency_ns.max(), Ms(10));  // from the wave's start
}

// Runs `requests` closed-loop calls against an inline-answering target.
void RunClosed(RunnerOptions options, Workload& workload, FakeTarget& target,
               LatencyRecorder& recorder, int64_t requests) {
  FakeTimerQueue timers;
  options.concurrency = 8;
  options.duration = absl::InfiniteDuration();
  options.max_requests = requests;
  Runner runner(options, workload, target, recorder, timers);
  runner.Start();
  runner.Wait();
}

TEST(RunnerTest, MaxDeadlineDrawsEachCallsDeadlineUniformly) {
  FakeTarget target;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.deadline = absl::Seconds(7);  // not used once max_deadline is set
  options.max_deadline = absl::Milliseconds(100);
  RunClosed(options, workload, target, recorder, 10000);
  const std::vector<absl::Duration> deadlines = target.deadlines();
  ASSERT_EQ(deadlines.size(), 10000u);
  absl::Duration sum;
  int below_10ms = 0;
  int above_90ms = 0;
  for (const absl::Duration d : deadlines) {
    ASSERT_GT(d, absl::ZeroDuration());
    ASSERT_LE(d, absl::Milliseconds(100));
    sum += d;
    below_10ms += d < absl::Milliseconds(10) ? 1 : 0;
    above_90ms += d > absl::Milliseconds(90) ? 1 : 0;
  }
  // Uniform on (0, 100 ms]: mean 50 ms (standard error 0.3 ms), 10% in each tenth.
  EXPECT_NEAR(absl::ToDoubleMilliseconds(sum / 10000), 50, 2);
  EXPECT_NEAR(below_10ms, 1000, 150);
  EXPECT_NEAR(above_90ms, 1000, 150);
}

TEST(RunnerTest, WithoutMaxDeadlineEveryCallGetsTheDeadline) {
  FakeTarget target;
  Workload workload(SmallWorkload());
  LatencyRecorder recorder;
  RunnerOptions options;
  options.deadline = absl::Milliseconds(250);
  RunClosed(options, workload, target, recorder, 500);
  for (const absl::Duration d : target.deadlines()) ASSERT_EQ(d, absl::Milliseconds(250));
}

TEST(RunnerTest, MixedCallsAreSentAndRecordedByKind) {
  FakeTarget target;
  WorkloadOptions mix = SmallWorkload(/*batch=*/4);
  mix.invalidate_share = 0.2;
  mix.batch_share = 0.3;
  Workload workload(mix);
  LatencyRecorder recorder;
  RunClosed(RunnerOptions(), workload, target, recorder, 3000);
  const std::vector<CallKind> kinds = target.kinds();
  const std::vector<std::vector<std::string>> keys = target.keys();
  ASSERT_EQ(kinds.size(), 3000u);
  std::array<int64_t, kCallKindCount> sent{};
  for (size_t i = 0; i < kinds.size(); ++i) {
    ++sent[static_cast<int>(kinds[i])];
    EXPECT_EQ(keys[i].size(), kinds[i] == CallKind::kBatchGet ? 4u : 1u);
  }
  EXPECT_EQ(recorder.Totals().kinds, sent);
  for (const CallKind kind : {CallKind::kGet, CallKind::kBatchGet, CallKind::kInvalidate}) {
    EXPECT_GT(sent[static_cast<int>(kind)], 300) << CallKindName(kind);
  }
  EXPECT_EQ(recorder.Totals().items,
            sent[0] + 4 * sent[1] + sent[2]);  // every key of every call answered
}

TEST(RunnerTest, ValidateNamesTheFlag) {
  RunnerOptions options;
  options.concurrency = 0;
  EXPECT_NE(options.Validate().message().find("--concurrency"), absl::string_view::npos);
  options = RunnerOptions();
  options.mode = LoopMode::kOpen;
  EXPECT_NE(options.Validate().message().find("--rate"), absl::string_view::npos);
  options = RunnerOptions();
  options.deadline = absl::ZeroDuration();
  EXPECT_NE(options.Validate().message().find("--deadline"), absl::string_view::npos);
  options = RunnerOptions();
  options.max_deadline = -absl::Milliseconds(1);
  EXPECT_NE(options.Validate().message().find("--max-deadline must be in [0, 1h]"),
            absl::string_view::npos);
  options.max_deadline = absl::Hours(2);
  EXPECT_NE(options.Validate().message().find("--max-deadline"), absl::string_view::npos);
  options.max_deadline = absl::Hours(1);
  EXPECT_TRUE(options.Validate().ok());
  options = RunnerOptions();
  options.mode = LoopMode::kHerd;
  options.waves = 0;
  EXPECT_NE(options.Validate().message().find("--waves"), absl::string_view::npos);
}

}  // namespace
}  // namespace flightcache::loadgen
