#include "flightcache/flight.h"

#include <atomic>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

// The consumer type offers no way to complete, reset or poison a flight.
template <typename F>
concept CanComplete = requires(F f) {
  f.Complete(absl::StatusOr<int>(1));
};
template <typename F>
concept CanReset = requires(F f) {
  f.Reset();
};
static_assert(!CanComplete<Future<int>>, "a consumer must not be able to complete a flight");
static_assert(!CanReset<Future<int>>, "a consumer must not be able to reset a flight");
static_assert(CanComplete<Promise<int>>, "the producer completes the flight");
static_assert(!std::is_copy_constructible_v<Promise<int>>, "one producer per flight");
// Waiters read an immutable shared value.
static_assert(std::is_same_v<SharedResult<int>, std::shared_ptr<const absl::StatusOr<int>>>);

TEST(FlightTest, AwaitAfterCompletionReturnsValue) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  EXPECT_FALSE(future.IsReady());
  EXPECT_EQ(future.Peek(), nullptr);
  ASSERT_TRUE(promise.Complete(std::string("v")));
  EXPECT_TRUE(future.IsReady());
  SharedResult<std::string> r = future.Await();
  ASSERT_TRUE(r->ok());
  EXPECT_EQ(**r, "v");
}

TEST(FlightTest, AwaitingTwiceReturnsTheSameSharedObject) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  promise.Complete(7);
  SharedResult<int> a = future.Await();
  SharedResult<int> b = future.Await();
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(**a, 7);
}

TEST(FlightTest, SecondCompletionIsRejectedAndChangesNothing) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  EXPECT_TRUE(promise.Complete(1));
  EXPECT_FALSE(promise.Complete(2));
  EXPECT_FALSE(promise.Complete(absl::InternalError("poison")));
  EXPECT_EQ(**future.Await(), 1);
}

TEST(FlightTest, CallbacksRegisteredBeforeAndAfterCompletionAllRun) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  std::atomic<int> called{0};
  std::vector<Subscription<int>> subs;
  for (int i = 0; i < 50; ++i) {
    subs.push_back(future.OnComplete([&](const SharedResult<int>& r) {
      EXPECT_EQ(**r, 3);
      called++;
    }));
  }
  EXPECT_EQ(called.load(), 0);
  promise.Complete(3);
  EXPECT_EQ(called.load(), 50);
  for (int i = 0; i < 50; ++i) {
    future.OnComplete([&](const SharedResult<int>& r) {
      EXPECT_EQ(**r, 3);
      called++;
    });
  }
  EXPECT_EQ(called.load(), 100);
}

TEST(FlightTest, CancelledSubscriptionNeverRuns) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  bool called = false;
  Subscription<int> sub = future.OnComplete([&](const SharedResult<int>&) { called = true; });
  EXPECT_TRUE(sub.Cancel());
  EXPECT_FALSE(sub.Cancel());
  promise.Complete(1);
  EXPECT_FALSE(called);
}

TEST(FlightTest, CancelAfterDeliveryReportsFalse) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  Subscription<int> sub = future.OnComplete([](const SharedResult<int>&) {});
  promise.Complete(1);
  EXPECT_FALSE(sub.Cancel());
}

TEST(FlightTest, DroppedPromiseCompletesWithInternal) {
  Future<int> future;
  {
    Promise<int> promise;
    future = promise.GetFuture();
  }
  SharedResult<int> r = future.Await();
  EXPECT_EQ(r->status().code(), absl::StatusCode::kInternal);
}

TEST(FlightTest, MovedFromPromiseDoesNotAbandon) {
  Promise<int> a;
  Future<int> future = a.GetFuture();
  Promise<int> b = std::move(a);
  EXPECT_FALSE(future.IsReady());
  b.Complete(5);
  EXPECT_EQ(**future.Await(), 5);
}

TEST(FlightTest, AwaitReturnsDeadlineExceededWhileFlightGoesOn) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  const absl::Time start = absl::Now();
  SharedResult<int> r = future.Await(CallContext::WithTimeout(absl::Milliseconds(50)));
  const absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(r->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(waited, absl::Milliseconds(45));
  EXPECT_LT(waited, absl::Seconds(5));
  EXPECT_FALSE(future.IsReady());
  promise.Complete(9);
  EXPECT_EQ(**future.Await(), 9);
}

TEST(FlightTest, AwaitReturnsCancelledWhenTokenFires) {
  Promise<int> promise;
  Future<int> future = promise.GetFuture();
  std::stop_source cancel;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(20));
    cancel.request_stop();
  });
  SharedResult<int> r = future.Await(CallContext(absl::InfiniteFuture(), cancel.get_token()));
  canceller.join();
  EXPECT_EQ(r->status().code(), absl::StatusCode::kCancelled);
}

TEST(FlightTest, AwaitWithAlreadyCancelledTokenReturnsAtOnce) {
  Promise<int> promise;
  std::stop_source cancel;
  cancel.request_stop();
  SharedResult<int> r =
      promise.GetFuture().Await(CallContext(absl::InfiniteFuture(), cancel.get_token()));
  EXPECT_EQ(r->status().code(), absl::StatusCode::kCancelled);
}

TEST(FlightTest, ManyThreadsAwaitOneFlightAndSeeOneObject) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  constexpr int kThreads = 64;
  std::vector<const absl::StatusOr<std::string>*> seen(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { seen[i] = future.Await().get(); });
  }
  promise.Complete(std::string(1000, 'x'));
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(seen[i], future.Peek().get());
  }
}

}  // namespace
}  // namespace flightcache
