#include "server/fleet/event_loop.h"

#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

using ::flightcache::testing::Latch;
using ::testing::ElementsAre;

// What the loop ran, in order (appended on the loop thread, read by the test).
class Journal {
 public:
  void Add(std::string entry) {
    absl::MutexLock lock(&mu_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> entries() {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

TEST(EventLoopTest, PostedTasksRunOnTheLoopThreadInOrder) {
  EventLoop loop;
  Journal journal;
  Latch ran(3);
  for (const char* name : {"a", "b", "c"}) {
    loop.Post([&, name] {
      journal.Add(loop.InLoopThread() ? name : "not on the loop thread");
      ran.CountDown();
    });
  }
  ASSERT_TRUE(ran.WaitFor()) << "posted tasks never ran";
  EXPECT_THAT(journal.entries(), ElementsAre("a", "b", "c"));
  EXPECT_FALSE(loop.InLoopThread());
}

TEST(EventLoopTest, APostFromTheLoopThreadRunsLaterNotInline) {
  EventLoop loop;
  Journal journal;
  Latch ran(1);
  loop.RunSync([&] {
    loop.Post([&] {
      journal.Add("posted");
      ran.CountDown();
    });
    journal.Add("poster returns");
  });
  ASSERT_TRUE(ran.WaitFor()) << "the task never ran";
  EXPECT_THAT(journal.entries(), ElementsAre("poster returns", "posted"));
}

TEST(EventLoopTest, TimersRunInDueOrderAndCancelledOnesNever) {
  EventLoop loop;
  Journal journal;
  Latch ran(2);
  loop.RunSync([&] {
    loop.RunAfter(absl::Milliseconds(30), [&] {
      journal.Add("30ms");
      ran.CountDown();
    });
    const EventLoop::TimerId cancelled =
        loop.RunAfter(absl::Milliseconds(5), [&] { journal.Add("cancelled"); });
    loop.RunAfter(absl::Milliseconds(10), [&] {
      journal.Add("10ms");
      ran.CountDown();
    });
    EXPECT_TRUE(loop.Cancel(cancelled));
    EXPECT_FALSE(loop.Cancel(cancelled));
    EXPECT_FALSE(loop.Cancel(EventLoop::kNoTimer));
  });
  const absl::Time start = absl::Now();
  ASSERT_TRUE(ran.WaitFor()) << "timers never ran";
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
  EXPECT_THAT(journal.entries(), ElementsAre("10ms", "30ms"));
}

TEST(EventLoopTest, TimerIsNotEarly) {
  EventLoop loop;
  Latch ran(1);
  absl::Time fired;
  absl::Time due;
  loop.Post([&] {
    due = EventLoop::Now() + absl::Milliseconds(15);
    loop.RunAt(due, [&] {
      fired = EventLoop::Now();
      ran.CountDown();
    });
  });
  ASSERT_TRUE(ran.WaitFor()) << "the task never ran";
  loop.RunSync([&] { EXPECT_GE(fired, due); });
}

TEST(EventLoopTest, WatchedFdWakesItsHandlerWhichMayUnwatchItself) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  Latch readable(1);
  int calls = 0;  // loop thread only
  EventLoop::WatchId watch = EventLoop::kNoWatch;
  loop.RunSync([&] {
    watch = loop.Watch(fds[0], [&](uint32_t) {
      char byte;
      ASSERT_EQ(read(fds[0], &byte, 1), 1);
      ++calls;
      loop.Unwatch(watch);  // the running handler's own watch
      readable.CountDown();
    });
    loop.SetInterest(watch, /*read=*/true, /*write=*/false);
  });
  ASSERT_EQ(write(fds[1], "xy", 2), 2);
  ASSERT_TRUE(readable.WaitFor()) << "the readable fd never woke its handler";
  // The second byte is still there, but the handler is gone.
  absl::SleepFor(absl::Milliseconds(20));
  loop.RunSync([&] { EXPECT_EQ(calls, 1); });
  close(fds[0]);
  close(fds[1]);
}

TEST(EventLoopTest, AWriteToAClosedPipeOnTheLoopFailsWithEpipeInsteadOfEndingTheProcess) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  ssize_t written = 0;
  int error = 0;
  loop.RunSync([&] {
    written = write(fds[1], "x", 1);  // SIGPIPE's default action would end this test
    error = errno;
  });
  EXPECT_EQ(written, -1);
  EXPECT_EQ(error, EPIPE);
  close(fds[1]);
}

TEST(EventLoopTest, RunSyncWaitsForItsTaskFromManyThreads) {
  EventLoop loop;
  int counter = 0;  // loop thread only
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) loop.RunSync([&] { ++counter; });
    });
  }
  for (std::thread& thread : threads) thread.join();
  loop.RunSync([&] { EXPECT_EQ(counter, 400); });
}

}  // namespace
}  // namespace flightcache
