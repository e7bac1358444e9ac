#include "flightcache/worker_pool.h"

#include <atomic>
#include <stdexcept>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

using ::flightcache::testing::kTestWait;
using ::flightcache::testing::Latch;

TEST(WorkerPoolTest, RunsEveryPostedTask) {
  Latch ran(100);
  WorkerPool pool(3);
  for (int i = 0; i < 100; ++i) pool.Post([&ran] { ran.CountDown(); });
  ASSERT_TRUE(ran.WaitFor()) << "a posted task never ran";
}

// The reason the pool exists: a task that blocks holds back only itself.
TEST(WorkerPoolTest, ABlockedTaskDoesNotHoldBackTheNext) {
  absl::Notification release;
  absl::Notification second_ran;
  WorkerPool pool(2);
  pool.Post([&release] { release.WaitForNotificationWithTimeout(kTestWait); });
  pool.Post([&second_ran] { second_ran.Notify(); });
  const bool ran = second_ran.WaitForNotificationWithTimeout(kTestWait);
  release.Notify();
  EXPECT_TRUE(ran) << "the second task waited for the first, blocked one";
}

TEST(WorkerPoolTest, NeverRunsATaskInline) {
  absl::Notification started;
  absl::Notification release;
  std::atomic<bool> ran{false};
  {
    WorkerPool pool(1);
    pool.Post([&started, &release] {
      started.Notify();
      release.WaitForNotificationWithTimeout(kTestWait);
    });
    ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTestWait));
    pool.Post([&ran] { ran = true; });
    EXPECT_FALSE(ran.load()) << "Post ran the task on the caller's thread";
    EXPECT_EQ(pool.queued(), 1u);
    release.Notify();
  }
}

// Tasks still queued when the pool is destroyed run before it returns: each may be the only thing
// that releases what its poster holds (a flight's waiter, a call).
TEST(WorkerPoolTest, DestructionRunsTheTasksAlreadyPosted) {
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1);
    pool.Post([&release] { release.WaitForNotificationWithTimeout(kTestWait); });
    for (int i = 0; i < 10; ++i) pool.Post([&ran] { ran.fetch_add(1); });
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 10);
}

TEST(WorkerPoolTest, AThrowingTaskDoesNotStopItsWorker) {
  Latch ran(1);
  WorkerPool pool(1);
  pool.Post([] { throw std::runtime_error("task failed"); });
  pool.Post([&ran] { ran.CountDown(); });
  ASSERT_TRUE(ran.WaitFor()) << "the worker stopped after a task threw";
}

}  // namespace
}  // namespace flightcache
