// CacheService leaves a load at the caller's deadline by its own timer (CacheServiceOptions::
// deadline_timers), not when gRPC gets round to reporting the deadline: under load that report
// comes milliseconds late, and so would the cancellation of the origin call of a load whose last
// waiter the caller was.
//
// The deadline timers here are a FakeTimerQueue: the test moves their time past the caller's
// deadline while the caller's real deadline is still a minute away, so whatever happens can only
// come from the service's own timer.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "flightcache/flight_cache.h"
#include "flightcache/timer_queue.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "flightcache/worker_pool.h"
#include "gtest/gtest.h"
#include "server/cache_service.h"
#include "server/grpc_listener.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"
#include "tests/testing/latch.h"

namespace flightcache::testing {
namespace {

class CacheServiceDeadlineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    // The loads' own timeout is never reached here: only a caller's deadline ends a load.
    cache_ = std::make_unique<FlightCache>(FlightCacheOptions{.load_timeout = absl::Hours(1)},
                                           origin_, load_timers_);
    service_ =
        std::make_unique<CacheService>(*cache_,
                                       CacheServiceOptions{.deadline_timers = &deadline_timers_,
                                                           .deadline_workers = &deadline_workers_},
                                       nullptr);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    absl::StatusOr<GrpcServer> server = StartGrpcServer(builder, "127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->server);
    stub_ = v1::Cache::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port),
                                                   grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
    cache_.reset();
  }

  // A Get with a deadline a minute away, left running.
  struct Call {
    grpc::ClientContext context;
    v1::GetRequest request;
    v1::GetResponse response;
    grpc::Status status;
    absl::Notification done;
  };
  std::unique_ptr<Call> StartGet(const std::string& key) {
    auto call = std::make_unique<Call>();
    call->request.set_key(key);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(1));
    Call* raw = call.get();
    stub_->async()->Get(&raw->context, &raw->request, &raw->response, [raw](grpc::Status status) {
      raw->status = std::move(status);
      raw->done.Notify();
    });
    return call;
  }

  // A BatchGet with a deadline a minute away, left running.
  struct BatchCall {
    grpc::ClientContext context;
    v1::BatchGetRequest request;
    v1::BatchGetResponse response;
    grpc::Status status;
    absl::Notification done;
  };
  std::unique_ptr<BatchCall> StartBatchGet(std::initializer_list<std::string> keys) {
    auto call = std::make_unique<BatchCall>();
    for (const std::string& key : keys) call->request.add_keys(key);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(1));
    BatchCall* raw = call.get();
    stub_->async()->BatchGet(&raw->context, &raw->request, &raw->response,
                             [raw](grpc::Status status) {
                               raw->status = std::move(status);
                               raw->done.Notify();
                             });
    return call;
  }

  // Moves the callers' time forward, then waits until the deadline workers have run every leave
  // that the timers due by then posted (they run after the timer, on the workers).
  void AdvanceAndDrain(absl::Duration d) {
    deadline_timers_.Advance(d);
    // One task per worker, each waiting until all have started: all run at once only when every
    // worker is done with what was posted before them (the queue is FIFO).
    // Shared: on a timeout the tasks outlive this frame.
    auto started = std::make_shared<Latch>(kDeadlineWorkers);
    auto finished = std::make_shared<Latch>(kDeadlineWorkers);
    for (int i = 0; i < kDeadlineWorkers; ++i) {
      deadline_workers_.Post([started, finished] {
        started->CountDown();
        (void)started->WaitFor();
        finished->CountDown();
      });
    }
    ASSERT_TRUE(finished->WaitFor()) << "the deadline workers did not drain";
  }

  // Polls `done` every 5 ms for up to kTestWait; its last answer.
  template <typename Predicate>
  static bool PollFor(Predicate done) {
    for (const absl::Time end = absl::Now() + kTestWait; absl::Now() < end;) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return done();
  }

  // A Get's timer is armed once its Get has returned (after the load started): wait for it.
  bool WaitForTimers(size_t n) {
    for (int i = 0; i < 4000 && deadline_timers_.pending() < n; ++i) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return deadline_timers_.pending() == n;
  }

  FakeOrigin origin_;
  ThreadTimerQueue load_timers_;  // the load's own timeout (never reached here)
  static constexpr int kDeadlineWorkers = 2;
  WorkerPool deadline_workers_{kDeadlineWorkers};  // where what a deadline triggers runs
  FakeTimerQueue deadline_timers_;                 // the callers' deadlines
  std::unique_ptr<FlightCache> cache_;
  std::unique_ptr<CacheService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Cache::Stub> stub_;
};

TEST_F(CacheServiceDeadlineTest, AtTheDeadlineTheLastWaiterLeavesAndTheLoadIsCancelled) {
  std::unique_ptr<Call> call = StartGet("k");
  ASSERT_TRUE(origin_.WaitForFetches(1));
  ASSERT_TRUE(WaitForTimers(1));  // one timer, at the caller's deadline
  EXPECT_FALSE(call->done.HasBeenNotified());

  AdvanceAndDrain(absl::Minutes(2));  // past the deadline, in the service's time only
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(origin_.cancelled(0));  // it was the load's last waiter: the fetch is cancelled
}

// Leaving at a deadline can wait inside gRPC (the origin call's TryCancel under load). That wait
// must hold back only its own call: the next caller's deadline still cancels its load on time.
TEST_F(CacheServiceDeadlineTest, ASlowLeaveDoesNotHoldBackTheNextDeadline) {
  absl::Notification release_stuck;
  origin_.set_cancel_hook([&release_stuck](const FetchRequest& request) {
    if (request.key == "stuck") release_stuck.WaitForNotificationWithTimeout(kTestWait);
  });
  std::unique_ptr<Call> stuck = StartGet("stuck");
  ASSERT_TRUE(origin_.WaitForFetches(1));
  ASSERT_TRUE(WaitForTimers(1));
  std::unique_ptr<Call> free = StartGet("free");  // its deadline is due after the stuck one's
  ASSERT_TRUE(origin_.WaitForFetches(2));
  ASSERT_TRUE(WaitForTimers(2));

  // Both deadlines pass. Advanced on a thread of its own: run on the timer's thread, the stuck
  // leave would block the advance itself.
  std::thread advance([this] { deadline_timers_.Advance(absl::Minutes(2)); });
  const bool free_cancelled = PollFor([this] { return origin_.cancelled(1); });
  release_stuck.Notify();
  advance.join();
  EXPECT_TRUE(free_cancelled) << "the second deadline waited for the first, stuck leave";
  ASSERT_TRUE(free->done.WaitForNotificationWithTimeout(kTestWait));
  EXPECT_EQ(free->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(stuck->done.WaitForNotificationWithTimeout(kTestWait));
  EXPECT_EQ(stuck->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(PollFor([this] { return origin_.cancelled(0); }))
      << "the stuck load was not cancelled once its cancellation was let through";
}

TEST_F(CacheServiceDeadlineTest, AnAnsweredGetDisarmsItsTimer) {
  std::unique_ptr<Call> call = StartGet("k");
  ASSERT_TRUE(origin_.WaitForFetches(1));
  ASSERT_TRUE(WaitForTimers(1));
  ASSERT_TRUE(origin_.AnswerValue(0, "v"));
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(call->status.ok()) << call->status.error_message();
  EXPECT_EQ(call->response.value(), "v");
  EXPECT_EQ(deadline_timers_.pending(), 0u);  // no timer left behind per call
}

TEST_F(CacheServiceDeadlineTest, AHitArmsNoTimer) {
  origin_.set_auto_answer([](const FetchRequest&) { return FetchResult{.value = "v"}; });
  std::unique_ptr<Call> first = StartGet("k");
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  std::unique_ptr<Call> hit = StartGet("k");
  ASSERT_TRUE(hit->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(hit->status.ok());
  EXPECT_EQ(hit->response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(deadline_timers_.pending(), 0u);
}

// Another waiter keeps the load: the expired caller leaves, the load goes on for the other.
TEST_F(CacheServiceDeadlineTest, AWaiterLeavingAtItsDeadlineDoesNotCancelAnotherWaitersLoad) {
  std::unique_ptr<Call> first = StartGet("k");
  ASSERT_TRUE(origin_.WaitForFetches(1));
  ASSERT_TRUE(WaitForTimers(1));                 // the first's timer is armed at its deadline
  deadline_timers_.Advance(absl::Seconds(30));   // nobody's deadline yet
  std::unique_ptr<Call> second = StartGet("k");  // joins; its deadline is 30 s after the first's
  ASSERT_TRUE(WaitForTimers(2));                 // the second has joined
  AdvanceAndDrain(absl::Seconds(31));            // the first's deadline only
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(first->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_FALSE(origin_.cancelled(0));
  ASSERT_TRUE(origin_.AnswerValue(0, "v"));
  ASSERT_TRUE(second->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(second->status.ok());
  EXPECT_EQ(second->response.source(), v1::SOURCE_COALESCED);
}

// BatchGet: at the deadline every key still waiting leaves its flight; keys already answered
// keep their results, and the call ends DEADLINE_EXCEEDED.
TEST_F(CacheServiceDeadlineTest, BatchGetLeavesEveryWaitingKeyAtTheDeadline) {
  std::unique_ptr<BatchCall> call = StartBatchGet({"slow-1", "slow-2"});
  ASSERT_TRUE(origin_.WaitForFetches(2));
  ASSERT_TRUE(WaitForTimers(1));             // one timer for the whole call
  ASSERT_TRUE(origin_.AnswerValue(0, "v"));  // one key answered before the deadline
  EXPECT_FALSE(call->done.HasBeenNotified());

  AdvanceAndDrain(absl::Minutes(2));
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(origin_.cancelled(1));  // the key still waiting: its load is cancelled
  EXPECT_EQ(deadline_timers_.pending(), 0u);
}

TEST_F(CacheServiceDeadlineTest, AnsweredBatchGetDisarmsItsTimer) {
  std::unique_ptr<BatchCall> call = StartBatchGet({"a", "b"});
  ASSERT_TRUE(origin_.WaitForFetches(2));
  ASSERT_TRUE(WaitForTimers(1));
  ASSERT_TRUE(origin_.AnswerValue(0, "va"));
  ASSERT_TRUE(origin_.AnswerValue(1, "vb"));
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(call->status.ok()) << call->status.error_message();
  ASSERT_EQ(call->response.results_size(), 2);
  EXPECT_EQ(deadline_timers_.pending(), 0u);
}

}  // namespace
}  // namespace flightcache::testing
