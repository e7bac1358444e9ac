#include "flightcache/timer_queue.h"

#include <malloc.h>

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

TEST(ThreadTimerQueueTest, RunsCallbacksInDeadlineOrder) {
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  ThreadTimerQueue timers;  // declared last: its thread is joined before the state it touches dies
  const absl::Time base = timers.clock().Now() + absl::Milliseconds(30);
  for (int i : {3, 1, 2}) {
    timers.RunAt(base + absl::Milliseconds(10 * i), [&, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
      if (order.size() == 3) done.Notify();
    });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(ThreadTimerQueueTest, DoesNotRunBeforeItsTime) {
  absl::Notification ran;
  ThreadTimerQueue timers;
  const absl::Time scheduled = timers.clock().Now();
  absl::Time ran_at;
  timers.RunAfter(absl::Milliseconds(40), [&] {
    ran_at = timers.clock().Now();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(ran_at - scheduled, absl::Milliseconds(40));
}

TEST(ThreadTimerQueueTest, CancelledTimerNeverRuns) {
  std::atomic<bool> ran{false};
  absl::Notification later;
  ThreadTimerQueue timers;
  TimerId id = timers.RunAfter(absl::Milliseconds(30), [&] { ran = true; });
  EXPECT_TRUE(timers.Cancel(id));
  EXPECT_FALSE(timers.Cancel(id));
  timers.RunAfter(absl::Milliseconds(60), [&] { later.Notify(); });
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(ThreadTimerQueueTest, EarlierTimerScheduledLaterWakesTheThread) {
  absl::Notification soon;
  ThreadTimerQueue timers;
  timers.RunAfter(absl::Hours(1), [] {});
  timers.RunAfter(absl::Milliseconds(10), [&] { soon.Notify(); });
  EXPECT_TRUE(soon.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(ThreadTimerQueueTest, ThrowingCallbackDoesNotStopTheQueue) {
  absl::Notification next;
  ThreadTimerQueue timers;
  timers.RunAfter(absl::Milliseconds(1), [] { throw std::runtime_error("boom"); });
  timers.RunAfter(absl::Milliseconds(20), [&] { next.Notify(); });
  EXPECT_TRUE(next.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(ThreadTimerQueueTest, CallbackMayScheduleAndCancelTimers) {
  absl::Notification second;
  ThreadTimerQueue timers;
  timers.RunAfter(absl::Milliseconds(1), [&] {
    TimerId never = timers.RunAfter(absl::Hours(1), [] {});
    timers.Cancel(never);
    timers.RunAfter(absl::Milliseconds(1), [&] { second.Notify(); });
  });
  EXPECT_TRUE(second.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

// Records what ThreadTimerQueue reports; Wait bounds the wait for the n-th firing.
class RecordingTimerObserver final : public TimerQueueObserver {
 public:
  void OnTimerFired(const TimerFiring& firing) override {
    absl::MutexLock lock(&mu_);
    firings_.push_back(firing);
  }
  std::vector<TimerFiring> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return firings_.size() >= n; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10)))
        << "only " << firings_.size() << " of " << n << " timer firings reported";
    return firings_;
  }

 private:
  absl::Mutex mu_;
  std::vector<TimerFiring> firings_ ABSL_GUARDED_BY(mu_);
};

// On a fake clock that moves only inside callbacks, lateness and callback duration are exact.
TEST(ThreadTimerQueueTest, ReportsLatenessAndCallbackDurationOfEachTimer) {
  testing::FakeClock clock;
  RecordingTimerObserver observer;
  ThreadTimerQueue timers(clock, &observer);
  const absl::Time start = clock.Now();
  // Already 15 ms overdue when scheduled; its callback holds the thread for 7 ms of clock time.
  timers.RunAt(start - absl::Milliseconds(15), [&] { clock.Advance(absl::Milliseconds(7)); });
  // Due 5 ms ago: it waits behind the first callback, so it is taken 5 + 7 ms late.
  timers.RunAt(start - absl::Milliseconds(5), [] {});
  const std::vector<TimerFiring> firings = observer.WaitFor(2);
  ASSERT_EQ(firings.size(), 2u);
  EXPECT_EQ(firings[0].lateness, absl::Milliseconds(15));
  EXPECT_EQ(firings[0].callback_duration, absl::Milliseconds(7));
  EXPECT_EQ(firings[1].lateness, absl::Milliseconds(12));
  EXPECT_EQ(firings[1].callback_duration, absl::ZeroDuration());
}

TEST(ThreadTimerQueueTest, CancelledTimersAreNotReported) {
  testing::FakeClock clock;
  RecordingTimerObserver observer;
  ThreadTimerQueue timers(clock, &observer);
  const TimerId never = timers.RunAt(clock.Now() + absl::Hours(1), [] {});
  ASSERT_TRUE(timers.Cancel(never));
  absl::Notification ran;
  timers.RunAt(clock.Now(), [&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(observer.WaitFor(1).size(), 1u);
}

TEST(FakeTimerQueueTest, AdvanceRunsDueTimersOnly) {
  testing::FakeTimerQueue timers;
  int ran = 0;
  timers.RunAfter(absl::Milliseconds(10), [&] { ran++; });
  timers.RunAfter(absl::Milliseconds(20), [&] { ran++; });
  timers.Advance(absl::Milliseconds(9));
  EXPECT_EQ(ran, 0);
  timers.Advance(absl::Milliseconds(1));
  EXPECT_EQ(ran, 1);
  timers.Advance(absl::Milliseconds(100));
  EXPECT_EQ(ran, 2);
}

// A cancelled timer's entry goes at once, not at its due time. Every load schedules a load-timeout
// timer and cancels it when it completes: otherwise the heap holds every load of the last
// load_timeout, not the loads in flight (10k loads/s with a 10 minute timeout: 6M entries, ~100
// MB).
TEST(ThreadTimerQueueTest, CancelledTimersDoNotAccumulate) {
  // Measures the heap with mallinfo2; skip where the allocator does not report (sanitizers).
  // Counts mmap()ed blocks too: glibc serves large vectors from mmap, not the arena.
  auto allocated = [] {
    const struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
  };
  const size_t probe_before = allocated();
  auto probe = std::make_unique<char[]>(8 << 20);
  probe[0] = 1;
  const size_t probe_after = allocated();
  probe.reset();
  if (probe_after < probe_before + (8 << 20)) {
    GTEST_SKIP() << "mallinfo2() does not see allocations here (sanitizer allocator)";
  }

  ThreadTimerQueue timers;
  constexpr int kTimers = 100000;  // would be 1.6 MB of stale heap entries
  const size_t before = allocated();
  for (int i = 0; i < kTimers; ++i) {
    const TimerId id = timers.RunAfter(absl::Hours(1), [] {});
    ASSERT_TRUE(timers.Cancel(id));
  }
  const size_t after = allocated();
  EXPECT_EQ(timers.pending(), 0u);
  EXPECT_LT(after, before + (512 << 10))
      << "no timer is live, yet the queue holds " << (after - before) << " more bytes";
}

}  // namespace
}  // namespace flightcache
