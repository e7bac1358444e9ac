#include "internal/single_flight.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "flightcache/worker_pool.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

using Group = SingleFlightGroup<std::string>;
using Outcome = Group::Outcome;
using testing::FakeTimerQueue;

// Keeps the LoadHandles the group gave out, so a test can answer loads when it likes.
class HeldLoads {
 public:
  Group::Loader Loader() {
    return [this](LoadHandle<std::string>&& load) {
      absl::MutexLock lock(&mu_);
      loads_.push_back(std::make_unique<LoadHandle<std::string>>(std::move(load)));
    };
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return loads_.size();
  }
  LoadHandle<std::string>& at(size_t i) {
    absl::MutexLock lock(&mu_);
    return *loads_.at(i);
  }

 private:
  absl::Mutex mu_;
  std::vector<std::unique_ptr<LoadHandle<std::string>>> loads_ ABSL_GUARDED_BY(mu_);
};

// Records what one waiter got.
// Its state is shared with the callback: a group destroyed after the Got (a test's locals die in
// reverse order) still answers its waiters, and must not write into a dead object.
struct Got {
  struct State {
    std::atomic<int> calls{0};
    SharedResult<std::string> result;
    Outcome outcome = Outcome::kStarted;
  };
  std::shared_ptr<State> state = std::make_shared<State>();
  std::atomic<int>& calls = state->calls;
  SharedResult<std::string>& result = state->result;
  Outcome& outcome = state->outcome;

  Group::Callback Callback() {
    return [s = state](const SharedResult<std::string>& r, Outcome o) {
      s->result = r;
      s->outcome = o;
      s->calls++;
    };
  }
};

class SingleFlightGroupTest : public ::testing::Test {
 protected:
  Group MakeGroup(AbandonPolicy policy = AbandonPolicy::kCancel, Group::Hooks hooks = {}) {
    return Group({.abandon = policy, .load_timeout = absl::Seconds(5)}, timers_, std::move(hooks));
  }
  testing::FakeTimerQueue timers_;
  HeldLoads loads_;
};

TEST_F(SingleFlightGroupTest, SecondCallerJoinsTheFirstCallersFlight) {
  Group group = MakeGroup();
  Got a, b;
  auto ja = group.Join("k", loads_.Loader(), a.Callback());
  auto jb = group.Join("k", loads_.Loader(), b.Callback());
  EXPECT_EQ(ja.outcome, Outcome::kStarted);
  EXPECT_EQ(jb.outcome, Outcome::kJoined);
  ASSERT_EQ(loads_.count(), 1u);
  loads_.at(0).Complete(std::string("value"));
  ASSERT_EQ(a.calls, 1);
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(**a.result, "value");
  EXPECT_EQ(a.result.get(), b.result.get());  // one shared immutable result
  EXPECT_EQ(a.outcome, Outcome::kStarted);
  EXPECT_EQ(b.outcome, Outcome::kJoined);
  EXPECT_EQ(group.size(), 0u);
  EXPECT_EQ(group.stats().inflight, 0);
}

TEST_F(SingleFlightGroupTest, DifferentKeysGetDifferentFlights) {
  Group group = MakeGroup();
  Got a, b;
  group.Join("a", loads_.Loader(), a.Callback());
  group.Join("b", loads_.Loader(), b.Callback());
  ASSERT_EQ(loads_.count(), 2u);
  EXPECT_EQ(loads_.at(0).key(), "a");
  EXPECT_EQ(loads_.at(1).key(), "b");
}

TEST_F(SingleFlightGroupTest, ThousandThreadsJoiningOneKeyStartExactlyOneLoad) {
  ThreadTimerQueue real_timers;
  Group group({.load_timeout = absl::Seconds(60)}, real_timers);
  std::atomic<int> loads{0};
  std::atomic<int> delivered{0};
  constexpr int kThreads = 1000;
  absl::Barrier* start = new absl::Barrier(kThreads);
  testing::Latch joined(kThreads);
  std::optional<LoadHandle<std::string>> held;
  absl::Mutex held_mu;
  std::vector<std::thread> threads;
  std::vector<FlightWaiter> waiters(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      if (start->Block()) delete start;
      auto j = group.Join(
          "hot",
          [&](LoadHandle<std::string>&& load) {
            loads++;
            absl::MutexLock lock(&held_mu);
            held.emplace(std::move(load));
          },
          [&](const SharedResult<std::string>& r, Outcome) {
            EXPECT_EQ(**r, "v");
            delivered++;
          });
      waiters[i] = std::move(j.waiter);
      joined.CountDown();
    });
  }
  ASSERT_TRUE(joined.WaitFor()) << "a joining thread did not finish";
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  {
    absl::MutexLock lock(&held_mu);
    ASSERT_TRUE(held.has_value());
    held->Complete(std::string("v"));
  }
  EXPECT_EQ(delivered.load(), kThreads);
  EXPECT_EQ(group.stats().started, 1);
}

TEST_F(SingleFlightGroupTest, FirstCallerLeavingDoesNotCancelTheSharedLoad) {
  Group group = MakeGroup();
  Got first, second;
  auto j1 = group.Join("k", loads_.Loader(), first.Callback());
  auto j2 = group.Join("k", loads_.Loader(), second.Callback());
  j1.waiter.Cancel();
  ASSERT_EQ(first.calls, 1);
  EXPECT_EQ(first.result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(loads_.at(0).cancelled());
  EXPECT_TRUE(loads_.at(0).Complete(std::string("v")));
  ASSERT_EQ(second.calls, 1);
  EXPECT_EQ(**second.result, "v");
  EXPECT_EQ(first.calls, 1);  // exactly once
}

TEST_F(SingleFlightGroupTest, LastWaiterLeavingCancelsTheLoadAtOnce) {
  Group group = MakeGroup();
  Got a, b;
  auto ja = group.Join("k", loads_.Loader(), a.Callback());
  auto jb = group.Join("k", loads_.Loader(), b.Callback());
  std::atomic<bool> stop_seen{false};
  std::stop_callback on_stop(loads_.at(0).stop_token(), [&] { stop_seen = true; });
  ja.waiter.Cancel();
  EXPECT_FALSE(stop_seen.load());
  jb.waiter.Cancel();
  // Synchronous: the stop token has fired by the time Cancel() returns.
  EXPECT_TRUE(stop_seen.load());
  EXPECT_EQ(group.size(), 0u);
  EXPECT_EQ(group.stats().abandoned, 1);
  EXPECT_EQ(group.stats().inflight, 0);
  EXPECT_EQ(timers_.pending(), 0u);  // the load timeout timer is gone too
  // The producer answering late is harmless.
  EXPECT_FALSE(loads_.at(0).Complete(std::string("late")));
  // A later caller starts a fresh flight.
  Got c;
  auto jc = group.Join("k", loads_.Loader(), c.Callback());
  EXPECT_EQ(jc.outcome, Outcome::kStarted);
  EXPECT_EQ(loads_.count(), 2u);
}

TEST_F(SingleFlightGroupTest, FinishPolicyLetsAnAbandonedLoadCompleteAndStore) {
  std::vector<std::string> stored;
  Group group =
      MakeGroup(AbandonPolicy::kFinish,
                {.store = [&](const std::string& key, const absl::StatusOr<std::string>& r) {
                  stored.push_back(key + "=" + *r);
                }});
  Got a;
  auto ja = group.Join("k", loads_.Loader(), a.Callback());
  ja.waiter.Cancel();
  EXPECT_FALSE(loads_.at(0).cancelled());
  EXPECT_EQ(group.size(), 1u);
  // A newcomer joins the still-running flight.
  Got b;
  EXPECT_EQ(group.Join("k", loads_.Loader(), b.Callback()).outcome, Outcome::kJoined);
  loads_.at(0).Complete(std::string("v"));
  EXPECT_EQ(stored, std::vector<std::string>{"k=v"});
  EXPECT_EQ(**b.result, "v");
}

TEST_F(SingleFlightGroupTest, LoadTimeoutCompletesWithUnavailableAndStopsTheLoad) {
  Group group = MakeGroup();
  Got a;
  group.Join("k", loads_.Loader(), a.Callback());
  timers_.Advance(absl::Milliseconds(4999));
  EXPECT_EQ(a.calls, 0);
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(loads_.at(0).cancelled());
  EXPECT_EQ(group.stats().timed_out, 1);
  EXPECT_EQ(group.size(), 0u);
}

TEST_F(SingleFlightGroupTest, DetachedFlightAnswersItsWaitersButIsNotStored) {
  std::vector<std::string> stored;
  Group group =
      MakeGroup(AbandonPolicy::kCancel,
                {.store = [&](const std::string& key, const absl::StatusOr<std::string>& r) {
                  stored.push_back(*r);
                }});
  Got old_waiter, new_waiter;
  group.Join("k", loads_.Loader(), old_waiter.Callback());
  bool ran_under_lock = false;
  EXPECT_TRUE(group.Detach("k", [&] { ran_under_lock = true; }));
  EXPECT_TRUE(ran_under_lock);
  // A caller after the detach never joins the old flight.
  EXPECT_EQ(group.Join("k", loads_.Loader(), new_waiter.Callback()).outcome, Outcome::kStarted);
  ASSERT_EQ(loads_.count(), 2u);
  loads_.at(1).Complete(std::string("new"));
  loads_.at(0).Complete(std::string("old"));  // the slow old load finishes last
  EXPECT_EQ(**old_waiter.result, "old");
  EXPECT_EQ(**new_waiter.result, "new");
  EXPECT_EQ(stored, std::vector<std::string>{"new"});  // the old value never overwrites it
}

TEST_F(SingleFlightGroupTest, RecheckHitStartsNoFlight) {
  bool cached = false;
  Group group =
      MakeGroup(AbandonPolicy::kCancel, {.recheck = [&](std::string_view) {
                  return cached ? MakeSharedResult<std::string>(std::string("cached")) : nullptr;
                }});
  cached = true;
  Got a;
  auto callback = a.Callback();
  auto j = group.Join("k", loads_.Loader(), std::move(callback));
  EXPECT_EQ(j.outcome, Outcome::kAnsweredByRecheck);
  ASSERT_NE(j.answer, nullptr) << "the recheck's result comes back with the outcome";
  EXPECT_EQ(**j.answer, "cached");
  EXPECT_EQ(loads_.count(), 0u);
  EXPECT_EQ(a.calls, 0);
  EXPECT_TRUE(callback != nullptr);  // not consumed: the caller still owns it
}

TEST_F(SingleFlightGroupTest, ThrowingLoaderGivesInternalToEveryWaiter) {
  Group group = MakeGroup();
  Got a;
  group.Join(
      "k", [](LoadHandle<std::string>&&) { throw std::runtime_error("origin exploded"); },
      a.Callback());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(a.result->status().message().find("origin exploded"), std::string::npos);
  EXPECT_EQ(group.size(), 0u);
}

TEST_F(SingleFlightGroupTest, DroppedLoadHandleGivesInternal) {
  Group group = MakeGroup();
  Got a;
  group.Join(
      "k", [](LoadHandle<std::string>&& load) { LoadHandle<std::string> gone(std::move(load)); },
      a.Callback());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kInternal);
}

TEST_F(SingleFlightGroupTest, CompletedHookSeesEveryFlightOnce) {
  std::vector<absl::StatusCode> codes;
  Group group =
      MakeGroup(AbandonPolicy::kCancel,
                {.completed = [&](const std::string&, const absl::StatusOr<std::string>& r) {
                  codes.push_back(r.status().code());
                }});
  Got a, b;
  group.Join("ok", loads_.Loader(), a.Callback());
  auto jb = group.Join("gone", loads_.Loader(), b.Callback());
  loads_.at(0).Complete(std::string("v"));
  jb.waiter.Cancel();
  loads_.at(1).Complete(std::string("late"));
  EXPECT_EQ(codes,
            (std::vector<absl::StatusCode>{absl::StatusCode::kOk, absl::StatusCode::kCancelled}));
}

TEST_F(SingleFlightGroupTest, DestroyingTheGroupCancelsFlightsAndLateAnswersAreHarmless) {
  Got a;
  {
    Group group = MakeGroup();
    group.Join("k", loads_.Loader(), a.Callback());
  }
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(loads_.at(0).cancelled());
  EXPECT_FALSE(loads_.at(0).Complete(std::string("late")));
}

// The race the refcount must close: callers join and leave while the last waiter leaves and the
// load completes. A caller that did not leave must always get the load's value — never the
// "every waiter left" cancellation of a flight it joined after its count reached zero.
TEST_F(SingleFlightGroupTest, JoinRacingWithLastLeaveNeverJoinsADoomedFlight) {
  ThreadTimerQueue real_timers;
  Group group({.load_timeout = absl::Seconds(60)}, real_timers);
  std::atomic<int> bad{0}, good{0}, cancelled_self{0}, callbacks{0};
  constexpr int kThreads = 4;
  constexpr int kRounds = 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kRounds; ++i) {
        const std::string key = "k" + std::to_string(i % 8);
        const bool leave = rng() % 2 == 0;
        auto j = group.Join(
            key,
            [](LoadHandle<std::string>&& load) {
              // Answer from another thread a moment later, racing with leaves.
              std::thread([load = std::move(load)]() mutable {
                load.Complete(std::string("v:") + load.key());
              }).detach();
            },
            [&, key, leave](const SharedResult<std::string>& r, Outcome) {
              callbacks++;
              if (r->ok()) {
                EXPECT_EQ(**r, "v:" + key);
                good++;
              } else if (absl::IsCancelled(r->status()) && leave) {
                cancelled_self++;
              } else {
                bad++;
              }
            });
        if (leave) j.waiter.Cancel();
      }
    });
  }
  for (auto& th : threads) th.join();
  // Wait for the detached answering threads to drain.
  for (int i = 0; i < 500 && callbacks.load() < kThreads * kRounds; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(callbacks.load(), kThreads * kRounds);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(good.load(), 0);
  for (int i = 0; i < 500 && group.stats().inflight != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(group.stats().inflight, 0);
  EXPECT_EQ(group.size(), 0u);
}

// A detached (invalidated) flight is out of the table, but destroying the group must still cancel
// and answer it: otherwise its waiters are stranded until the load answers, and the late answer
// runs the hooks of a destroyed group (in FlightCache: members of the destroyed cache).
TEST(SingleFlightGroupLifetimeTest, DestroyingTheGroupAlsoCancelsDetachedFlights) {
  FakeTimerQueue timers;
  std::unique_ptr<LoadHandle<std::string>> held;
  std::atomic<int> waiter_calls{0};
  absl::StatusCode waiter_code = absl::StatusCode::kOk;
  std::atomic<int> completed_hook_calls{0};
  {
    Group group({.load_timeout = absl::Seconds(5)}, timers,
                {.completed = [&](const std::string&, const absl::StatusOr<std::string>&) {
                  completed_hook_calls++;
                }});
    group.Join(
        "k",
        [&](LoadHandle<std::string>&& load) {
          held = std::make_unique<LoadHandle<std::string>>(std::move(load));
        },
        [&](const SharedResult<std::string>& r, Group::Outcome) {
          waiter_code = r->status().code();
          waiter_calls++;
        });
    ASSERT_TRUE(group.Detach("k"));  // an Invalidate while the load is in flight
  }                                  // ~SingleFlightGroup: "cancels every flight"
  EXPECT_EQ(waiter_calls, 1) << "the detached flight's waiter was not answered by the group's "
                                "destruction: it hangs until the origin answers";
  EXPECT_EQ(waiter_code, absl::StatusCode::kCancelled);
  EXPECT_TRUE(held->cancelled()) << "the detached load's stop token never fired";
  const int hooks_before = completed_hook_calls;
  EXPECT_FALSE(held->Complete(std::string("late")))
      << "completing a LoadHandle after its group was destroyed must be a no-op";
  EXPECT_EQ(completed_hook_calls, hooks_before)
      << "a late answer ran the `completed` hook of a destroyed group";
}

// A loader that reacts to its stop token at once (as the limiter does for a queued load: it
// answers CANCELLED from inside the stop callback) completes the abandoned flight before Leave()
// does; the flight must still be counted as abandoned.
TEST(SingleFlightGroupLifetimeTest, AbandonedCountIncludesLoadsThatStopInline) {
  FakeTimerQueue timers;
  Group group({.load_timeout = absl::Seconds(5)}, timers);
  std::optional<std::stop_callback<std::function<void()>>> on_stop;
  auto joined = group.Join(
      "k",
      [&](LoadHandle<std::string>&& load) {
        auto handle = std::make_shared<LoadHandle<std::string>>(std::move(load));
        on_stop.emplace(handle->stop_token(),
                        [handle] { handle->Complete(absl::CancelledError("left the queue")); });
      },
      [](const SharedResult<std::string>&, Group::Outcome) {});
  joined.waiter.Cancel();  // the last (only) waiter leaves: the flight is abandoned
  EXPECT_EQ(group.stats().abandoned, 1);
  EXPECT_EQ(group.stats().inflight, 0);
}

// With wake workers, a flight's waiters are answered by the completing thread and the workers
// together. The completing thread's first callback holds it until a callback has run on another
// thread: without the workers nothing else ever answers, and it gives up after 10 s.
TEST(SingleFlightGroupWakeTest, ManyWaitersAreAnsweredOnTheWorkersToo) {
  testing::FakeTimerQueue timers;
  WorkerPool workers(2);
  Group group({.wake_workers = &workers, .wake_batch = 8}, timers);
  HeldLoads loads;
  constexpr int kWaiters = 100;
  std::vector<std::atomic<int>> calls(kWaiters);
  absl::Notification answered_elsewhere;
  const std::thread::id completer = std::this_thread::get_id();
  std::atomic<bool> held{false};
  std::atomic<bool> elsewhere{false};  // Notify() may be called once
  for (int i = 0; i < kWaiters; ++i) {
    group.Join("k", loads.Loader(), [&, i](const SharedResult<std::string>& r, Outcome) {
      if (std::this_thread::get_id() != completer) {
        if (!elsewhere.exchange(true)) answered_elsewhere.Notify();
      } else if (!held.exchange(true)) {
        answered_elsewhere.WaitForNotificationWithTimeout(absl::Seconds(10));
      }
      if (r->ok() && **r == "v") calls[i]++;
    });
  }
  ASSERT_EQ(loads.count(), 1u);
  loads.at(0).Complete(std::string("v"));
  EXPECT_TRUE(answered_elsewhere.HasBeenNotified()) << "no waiter was answered by a worker";
  // Complete() may return while a worker still runs its last batch; the group waits for it.
  group.CancelAll();
  for (int i = 0; i < kWaiters; ++i) EXPECT_EQ(calls[i].load(), 1) << "waiter " << i;
}

// A worker may still be answering a flight's waiters when its completer returns; destroying the
// group waits for it, so no callback runs after the group (and whatever the callbacks point into)
// is gone. The completer's first callback waits until the worker has taken a waiter (whose
// callback is slow), so the completer returns first.
TEST(SingleFlightGroupWakeTest, DestroyingTheGroupWaitsForWakesOnTheWorkers) {
  testing::FakeTimerQueue timers;
  WorkerPool workers(1);
  auto group =
      std::make_unique<Group>(Group::Options{.wake_workers = &workers, .wake_batch = 1}, timers);
  HeldLoads loads;
  constexpr int kWaiters = 4;
  struct State {
    std::atomic<int> answered{0};
    std::atomic<bool> worker_started{false};
    absl::Notification worker_took_one;
    std::atomic<bool> held{false};
  };
  auto state = std::make_shared<State>();  // shared: a mutant may call back after the test
  const std::thread::id completer = std::this_thread::get_id();
  for (int i = 0; i < kWaiters; ++i) {
    group->Join("k", loads.Loader(), [state, completer](const SharedResult<std::string>&, Outcome) {
      if (std::this_thread::get_id() != completer) {
        if (!state->worker_started.exchange(true)) state->worker_took_one.Notify();
        absl::SleepFor(absl::Milliseconds(100));
      } else if (!state->held.exchange(true)) {
        state->worker_took_one.WaitForNotificationWithTimeout(absl::Seconds(10));
      }
      state->answered++;
    });
  }
  loads.at(0).Complete(std::string("v"));
  ASSERT_TRUE(state->worker_started.load()) << "the worker answered no waiter";
  group.reset();
  EXPECT_EQ(state->answered.load(), kWaiters) << "the group was destroyed during a wake";
}

// A waiter that throws on a wake worker costs the others nothing: the rest of its batch is still
// answered, and the group's destruction does not wait forever for the worker's wake. The
// completing thread's first callback holds it until a worker has taken a waiter, so workers take
// batches; the first waiter any worker calls throws (the first of its batch: three follow it).
TEST(SingleFlightGroupWakeTest, AWaiterThrowingOnAWorkerCostsTheOthersNothing) {
  testing::FakeTimerQueue timers;
  WorkerPool workers(2);
  auto group =
      std::make_unique<Group>(Group::Options{.wake_workers = &workers, .wake_batch = 4}, timers);
  HeldLoads loads;
  constexpr int kWaiters = 40;
  struct State {
    std::atomic<int> answered{0};
    std::atomic<int> thrown{0};
    std::atomic<bool> worker_seen{false};
    absl::Notification worker_answered;
    std::atomic<bool> held{false};
  };
  auto state = std::make_shared<State>();  // shared: a mutant may call back after the test
  const std::thread::id completer = std::this_thread::get_id();
  for (int i = 0; i < kWaiters; ++i) {
    group->Join("k", loads.Loader(), [state, completer](const SharedResult<std::string>&, Outcome) {
      if (std::this_thread::get_id() == completer) {
        if (!state->held.exchange(true)) {
          state->worker_answered.WaitForNotificationWithTimeout(absl::Seconds(10));
        }
      } else {
        if (!state->worker_seen.exchange(true)) {
          state->worker_answered.Notify();
          ++state->thrown;
          throw std::runtime_error("a waiter threw");
        }
      }
      ++state->answered;
    });
  }
  loads.at(0).Complete(std::string("v"));
  // Destroying the group waits for the workers' share; with a lost EndWake it would hang.
  absl::Notification destroyed;
  std::thread destroyer([&] {
    group.reset();
    destroyed.Notify();
  });
  if (!destroyed.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    std::fprintf(stderr,
                 "FAILED: destroying the group still waits after 30 s for a wake that a throwing "
                 "waiter cut short\n");
    std::abort();
  }
  destroyer.join();
  ASSERT_EQ(state->thrown.load(), 1) << "no waiter was called on a worker: nothing was shown";
  EXPECT_EQ(state->answered.load() + state->thrown.load(), kWaiters)
      << "waiters after a thrower were not answered";
}

}  // namespace
}  // namespace flightcache
