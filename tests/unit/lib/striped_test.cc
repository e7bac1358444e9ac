#include "internal/striped.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

TEST(ThisThreadStripeTest, LiveThreadsOwnDistinctStripesUntilTheyRunOutThenShareTheLast) {
  const ThreadStripe mine = ThisThreadStripe();
  EXPECT_EQ(ThisThreadStripe().index, mine.index);  // stable

  constexpr int kThreads = kStripes + 2;  // more than there are stripes to own
  std::vector<ThreadStripe> seen(kThreads);
  testing::Latch taken(kThreads);
  absl::Notification release;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      seen[i] = ThisThreadStripe();
      taken.CountDown();
      release.WaitForNotification();  // every thread alive at once
    });
  }
  const bool all_taken = taken.WaitFor();
  release.Notify();
  ASSERT_TRUE(all_taken) << "not every thread took a stripe";
  for (std::thread& t : threads) t.join();

  std::set<int> owned;
  int shared = 0;
  for (const ThreadStripe& stripe : seen) {
    if (stripe.exclusive) {
      EXPECT_NE(stripe.index, kSharedStripe);
      EXPECT_TRUE(owned.insert(stripe.index).second) << "stripe " << stripe.index << " owned twice";
    } else {
      EXPECT_EQ(stripe.index, kSharedStripe);
      ++shared;
    }
  }
  EXPECT_GE(shared, 3);  // at most kStripes - 1 can own one

  // The threads are gone: their stripes are free again.
  ThreadStripe later;
  std::thread([&later] { later = ThisThreadStripe(); }).join();
  EXPECT_TRUE(later.exclusive);
}

TEST(StripedCountersTest, SumsEveryThreadsAdds) {
  StripedCounters<2> counters;
  constexpr int kThreads = 2 * kStripes + 3;  // more threads than stripes: some share
  constexpr int kAdds = 10000;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&counters] {
      for (int j = 0; j < kAdds; ++j) {
        counters.Add(0);
        counters.Add(1, 3);
      }
      counters.Add(1, -1);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counters.Sum(0), int64_t{kThreads} * kAdds);
  EXPECT_EQ(counters.Sum(1), int64_t{kThreads} * (3 * kAdds - 1));
}

TEST(StripedSharedMutexTest, ReaderWaitsForTheWriter) {
  StripedSharedMutex mu;
  mu.Lock();
  std::atomic<bool> reader_in{false};
  std::thread reader([&] {
    StripedReaderLock lock(&mu);
    reader_in = true;
  });
  absl::SleepFor(absl::Milliseconds(50));  // time for a broken lock to let the reader in
  EXPECT_FALSE(reader_in.load());
  mu.Unlock();
  reader.join();
  EXPECT_TRUE(reader_in.load());
}

TEST(StripedSharedMutexTest, WriterWaitsForReadersInside) {
  StripedSharedMutex mu;
  mu.ReaderLock();
  std::atomic<bool> writer_in{false};
  std::thread writer([&] {
    StripedWriterLock lock(&mu);
    writer_in = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(writer_in.load());
  mu.ReaderUnlock();
  writer.join();
  EXPECT_TRUE(writer_in.load());
}

TEST(StripedSharedMutexTest, ReadersShareTheLock) {
  StripedSharedMutex mu;
  StripedReaderLock outer(&mu);
  absl::Notification inner_in;
  std::thread other([&] {
    StripedReaderLock inner(&mu);  // would block forever if readers excluded each other
    inner_in.Notify();
  });
  EXPECT_TRUE(inner_in.WaitForNotificationWithTimeout(absl::Seconds(30)));
  other.join();
}

// Writers keep two plain ints equal; readers must never see them differ. ThreadSanitizer also
// reports the plain accesses if the lock fails to order them.
TEST(StripedSharedMutexTest, ReadersNeverSeeAHalfDoneWrite) {
  StripedSharedMutex mu;
  int64_t a = 0;
  int64_t b = 0;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> torn{0};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        StripedReaderLock lock(&mu);
        if (a != b) torn.fetch_add(1);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::vector<std::thread> writers;
  for (int i = 0; i < 2; ++i) {
    writers.emplace_back([&] {
      for (int j = 0; j < 20000; ++j) {
        StripedWriterLock lock(&mu);
        ++a;
        ++b;
      }
    });
  }
  for (std::thread& t : writers) t.join();
  stop = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(a, 40000);
  EXPECT_EQ(b, 40000);
}

}  // namespace
}  // namespace flightcache
