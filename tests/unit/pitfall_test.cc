// One regression test per item of shared/spec/PITFALLS.md ("Twenty ways a future goes wrong").
// Items 7 and 8 live in pitfall_limiter_hedger_test.cc, item 15 in sharded_cache_test.cc.
#include <atomic>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "flightcache/await.h"
#include "flightcache/flight.h"
#include "flightcache/flight_cache.h"
#include "flightcache/single_flight.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"

namespace flightcache {
namespace {

using Group = SingleFlightGroup<std::string>;
using testing::FakeOrigin;
using testing::FakeTimerQueue;

// Counts live instances, to prove a result is freed.
struct Tracked {
  explicit Tracked(std::atomic<int>* live) : live(live) { ++*live; }
  ~Tracked() { --*live; }
  std::atomic<int>* live;
};

// A flight the test owns, with a stop_source as its cancellation.
struct OwnedFlight {
  Promise<std::string> promise;
  std::stop_source stop;
  PendingFlight<std::string> Pending() {
    return {promise.GetFuture(), [s = stop]() mutable { s.request_stop(); }};
  }
};

Group::Callback Record(std::vector<SharedResult<std::string>>* out) {
  return [out](const SharedResult<std::string>& r, Group::Outcome) { out->push_back(r); };
}

TEST(PitfallTest, P01CompletingAFlightNobodyWaitsForNeverBlocksAndFreesIt) {
  FakeTimerQueue timers;
  std::atomic<int> live{0};
  SingleFlightGroup<std::shared_ptr<Tracked>> group({.abandon = AbandonPolicy::kFinish}, timers);
  std::optional<LoadHandle<std::shared_ptr<Tracked>>> load;
  auto joined = group.Join(
      "k", [&](LoadHandle<std::shared_ptr<Tracked>>&& h) { load.emplace(std::move(h)); },
      [](const SharedResult<std::shared_ptr<Tracked>>&, auto) {});
  joined.waiter.Cancel();  // every waiter timed out
  // Completing with no waiter left returns at once (this thread would hang if it blocked).
  EXPECT_TRUE(load->Complete(std::make_shared<Tracked>(&live)));
  load.reset();
  EXPECT_EQ(group.size(), 0u);
  EXPECT_EQ(group.stats().inflight, 0);
  EXPECT_EQ(live.load(), 0);  // nobody holds the result: it was freed
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(PitfallTest, P02AwaitingTwiceAndFromManyThreadsReturnsTheSameValue) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  std::vector<const void*> seen(16);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      SharedResult<std::string> a = future.Await();
      SharedResult<std::string> b = future.Await();  // a second await does not hang
      EXPECT_EQ(a.get(), b.get());
      seen[i] = a.get();
    });
  }
  promise.Complete(std::string("v"));
  for (auto& t : threads) t.join();
  for (const void* p : seen) EXPECT_EQ(p, future.Peek().get());
  EXPECT_EQ(**future.Await(), "v");
}

TEST(PitfallTest, P03FlightsStartedInALoopCaptureTheirOwnInputs) {
  FakeTimerQueue timers;
  Group group({}, timers);
  constexpr int kFlights = 50;
  std::vector<SharedResult<std::string>> results(kFlights);
  std::vector<LoadHandle<std::string>> loads;
  for (int i = 0; i < kFlights; ++i) {
    const std::string key = "key-" + std::to_string(i);
    group.Join(
        key, [&loads](LoadHandle<std::string>&& h) { loads.push_back(std::move(h)); },
        [&results, i](const SharedResult<std::string>& r, Group::Outcome) { results[i] = r; });
  }
  // Answer in reverse order, each from its own key: a shared captured variable would make every
  // flight see the last value.
  for (int i = kFlights - 1; i >= 0; --i) loads[i].Complete("value-of-" + loads[i].key());
  for (int i = 0; i < kFlights; ++i) {
    ASSERT_NE(results[i], nullptr);
    EXPECT_EQ(**results[i], "value-of-key-" + std::to_string(i));
  }
}

TEST(PitfallTest, P04FanOutWithSomeFailuresCompletesWithAllResults) {
  constexpr int kFlights = 10;
  std::vector<OwnedFlight> owned(kFlights);
  std::vector<PendingFlight<std::string>> flights;
  for (auto& f : owned) flights.push_back(f.Pending());
  std::thread producer([&] {
    for (int i = 0; i < kFlights; ++i) {
      if (i % 3 == 0) {
        owned[i].promise.Complete(absl::UnavailableError("down"));
      } else {
        owned[i].promise.Complete("v" + std::to_string(i));
      }
    }
  });
  auto results = AwaitAll(flights, CallContext::WithTimeout(absl::Seconds(30)));
  producer.join();
  ASSERT_EQ(results.size(), static_cast<size_t>(kFlights));
  for (int i = 0; i < kFlights; ++i) {
    if (i % 3 == 0) {
      EXPECT_EQ(results[i]->status().code(), absl::StatusCode::kUnavailable);
    } else {
      EXPECT_EQ(**results[i], "v" + std::to_string(i));
    }
  }
}

TEST(PitfallTest, P05AwaitAnyCancelsEveryLoser) {
  constexpr int kFlights = 5;
  std::vector<OwnedFlight> owned(kFlights);
  std::vector<PendingFlight<std::string>> flights;
  for (auto& f : owned) flights.push_back(f.Pending());
  std::thread winner([&] { owned[2].promise.Complete(std::string("fast")); });
  AnyResult<std::string> first = AwaitAny(flights, CallContext::WithTimeout(absl::Seconds(30)));
  winner.join();
  EXPECT_EQ(first.index, 2);
  EXPECT_EQ(**first.result, "fast");
  for (int i = 0; i < kFlights; ++i) {
    EXPECT_EQ(owned[i].stop.stop_requested(), i != 2) << "flight " << i;
  }
}

TEST(PitfallTest, P06CompletionWakesEveryWaiterBeforeAndAfter) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  std::atomic<int> woke{0};
  absl::BlockingCounter before_ready(50);
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      future.OnComplete([&](const SharedResult<std::string>& r) {
        if (**r == "v") woke++;
      });
      before_ready.DecrementCount();
      if (**future.Await() == "v") woke++;
    });
  }
  before_ready.Wait();
  promise.Complete(std::string("v"));
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      if (**future.Await() == "v") woke++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(woke.load(), 150);  // 50 callbacks + 50 waits before + 50 waits after
}

// Runs a flight with three waiters down one producer path and returns what each waiter got.
std::vector<SharedResult<std::string>> RunProducerPath(
    const std::function<void(FakeTimerQueue&, Group&, std::vector<FlightWaiter>&,
                             std::optional<LoadHandle<std::string>>&)>& path,
    Group::Loader loader = nullptr) {
  FakeTimerQueue timers;
  Group group({.load_timeout = absl::Seconds(1)}, timers);
  std::vector<SharedResult<std::string>> got;
  std::optional<LoadHandle<std::string>> load;
  std::vector<FlightWaiter> waiters;
  for (int i = 0; i < 3; ++i) {
    Group::Loader l =
        loader ? std::move(loader)
               : Group::Loader([&](LoadHandle<std::string>&& h) { load.emplace(std::move(h)); });
    loader = nullptr;
    waiters.push_back(group.Join("k", std::move(l), Record(&got)).waiter);
  }
  path(timers, group, waiters, load);
  return got;
}

TEST(PitfallTest, P09EveryProducerPathCompletesAndWakesAllWaiters) {
  using Waiters = std::vector<FlightWaiter>;
  using Load = std::optional<LoadHandle<std::string>>;
  auto success = RunProducerPath(
      [](FakeTimerQueue&, Group&, Waiters&, Load& load) { load->Complete(std::string("v")); });
  auto error = RunProducerPath([](FakeTimerQueue&, Group&, Waiters&, Load& load) {
    load->Complete(absl::UnavailableError("down"));
  });
  auto dropped =
      RunProducerPath([](FakeTimerQueue&, Group&, Waiters&, Load& load) { load.reset(); });
  auto timeout = RunProducerPath(
      [](FakeTimerQueue& timers, Group&, Waiters&, Load&) { timers.Advance(absl::Seconds(1)); });
  auto cancel = RunProducerPath([](FakeTimerQueue&, Group&, Waiters& waiters, Load& load) {
    for (auto& w : waiters) w.Cancel();
    EXPECT_TRUE(load->cancelled());
  });
  ASSERT_EQ(success.size(), 3u);
  for (auto& r : success) EXPECT_EQ(**r, "v");
  for (auto* path : {&error, &dropped, &timeout, &cancel}) {
    ASSERT_EQ(path->size(), 3u);
    for (auto& r : *path) EXPECT_FALSE(r->ok());
  }
  EXPECT_EQ(error[0]->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(dropped[0]->status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(timeout[0]->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cancel[0]->status().code(), absl::StatusCode::kCancelled);
}

// Compile-time: a consumer has no operation that completes, resets or closes a flight.
template <typename F>
concept ConsumerCanComplete = requires(F f) {
  f.Complete(absl::StatusOr<std::string>("x"));
};
template <typename F>
concept ConsumerCanClose = requires(F f) {
  f.Close();
};
template <typename F>
concept ConsumerCanReset = requires(F f) {
  f.Reset();
};
static_assert(!ConsumerCanComplete<Future<std::string>>);
static_assert(!ConsumerCanClose<Future<std::string>>);
static_assert(!ConsumerCanReset<Future<std::string>>);
static_assert(!ConsumerCanComplete<FlightWaiter>);
static_assert(!ConsumerCanComplete<GetHandle>);
static_assert(!ConsumerCanComplete<const Future<std::string>>);

TEST(PitfallTest, P10OnlyTheProducerCompletesAndOnlyOnce) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  EXPECT_TRUE(promise.Complete(std::string("first")));
  EXPECT_FALSE(promise.Complete(std::string("poison")));
  EXPECT_EQ(**future.Await(), "first");
}

TEST(PitfallTest, P11ExceptionInALoadIsInternalForEveryWaiterAndTheProcessLives) {
  class ThrowingOrigin final : public Origin {
   public:
    void Fetch(const FetchRequest& r, std::stop_token, FetchCallback done) override {
      if (r.key == "boom") throw std::runtime_error("origin adapter bug");
      held.push_back(std::move(done));
    }
    std::string Describe() const override { return "throwing://"; }
    std::vector<FetchCallback> held;
  } origin;
  FakeTimerQueue timers;
  FlightCacheOptions options;
  options.max_concurrent_loads = 1;  // "boom" waits in the queue while its waiters gather
  FlightCache cache(options, origin, timers);
  std::vector<GetResult> got;
  cache.Get("blocker", [](GetResult) {});
  for (int i = 0; i < 3; ++i) cache.Get("boom", [&](GetResult r) { got.push_back(r); });
  EXPECT_TRUE(got.empty());
  origin.held[0](FetchResult{"v"});  // frees the permit: "boom" runs and throws
  ASSERT_EQ(got.size(), 3u);
  for (auto& r : got) EXPECT_EQ(r.status.code(), absl::StatusCode::kInternal) << r.status;
  EXPECT_EQ(cache.stats().loads_inflight, 0);
}

TEST(PitfallTest, P12SharedLoadOutlivesTheFirstCallersDeadline) {
  FakeOrigin origin;
  ThreadTimerQueue timers;
  FlightCache cache(FlightCacheOptions(), origin, timers);
  GetResult first, second;
  std::thread impatient(
      [&] { first = cache.GetBlocking("k", CallContext::WithTimeout(absl::Milliseconds(20))); });
  origin.WaitForFetches(1);  // the impatient caller started the load
  std::thread patient(
      [&] { second = cache.GetBlocking("k", CallContext::WithTimeout(absl::Seconds(30))); });
  impatient.join();  // its 20 ms deadline passes while the load runs on
  EXPECT_EQ(first.status.code(), absl::StatusCode::kDeadlineExceeded);
  // The patient caller joined before the impatient one left; answering after proves the load
  // survived the first caller's deadline.
  while (cache.stats().coalesced < 1) absl::SleepFor(absl::Milliseconds(1));
  origin.AnswerValue(0, "v");
  patient.join();
  EXPECT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(*second.value, "v");
  EXPECT_EQ(origin.cancellations(), 0);
  EXPECT_EQ(origin.fetches(), 1);
}

TEST(PitfallTest, P13WaitingHonoursTheCallersDeadlineAndCancellation) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  const absl::Time start = absl::Now();
  auto timed_out = future.Await(CallContext::WithTimeout(absl::Milliseconds(50)));
  EXPECT_EQ(timed_out->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  std::stop_source cancel;
  std::thread canceller([&] { cancel.request_stop(); });
  auto cancelled = future.Await(CallContext(absl::InfiniteFuture(), cancel.get_token()));
  canceller.join();
  EXPECT_EQ(cancelled->status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(future.IsReady());  // the load goes on
  promise.Complete(std::string("v"));
  EXPECT_EQ(**future.Await(), "v");
}

TEST(PitfallTest, P14FailFastAwaitAllCancelsItsSiblings) {
  std::vector<OwnedFlight> owned(4);
  std::vector<PendingFlight<std::string>> flights;
  for (auto& f : owned) flights.push_back(f.Pending());
  owned[0].promise.Complete(std::string("ok"));
  std::thread failer([&] { owned[1].promise.Complete(absl::UnavailableError("down")); });
  auto results =
      AwaitAll(flights, CallContext::WithTimeout(absl::Seconds(30)), AwaitAllMode::kFailFast);
  failer.join();
  EXPECT_EQ(**results[0], "ok");
  EXPECT_EQ(results[1]->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(results[2]->status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(owned[0].stop.stop_requested());  // already done: nothing to cancel
  EXPECT_FALSE(owned[1].stop.stop_requested());
  EXPECT_TRUE(owned[2].stop.stop_requested());
  EXPECT_TRUE(owned[3].stop.stop_requested());
}

TEST(PitfallTest, P16AbandonedFlightsProducerCompletesAndTheFlightIsFreed) {
  FakeOrigin origin;
  ThreadTimerQueue timers;
  FlightCache cache(FlightCacheOptions(), origin, timers);
  GetResult r = cache.GetBlocking("k", CallContext::WithTimeout(absl::Milliseconds(10)));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(origin.cancelled(0));             // the last waiter left: the load was told to stop
  EXPECT_FALSE(origin.AnswerValue(0, "late"));  // a producer answering late is not stuck
  FlightCacheStats s = cache.stats();
  EXPECT_EQ(s.loads_inflight, 0);
  EXPECT_EQ(s.loads_queued, 0);
  EXPECT_EQ(s.loads_cancelled, 1);
  EXPECT_EQ(s.entries, 0);
}

TEST(PitfallTest, P17ObservingReadinessDoesNotConsumeTheValue) {
  Promise<std::string> promise;
  Future<std::string> future = promise.GetFuture();
  EXPECT_FALSE(future.IsReady());
  promise.Complete(std::string("v"));
  EXPECT_TRUE(future.IsReady());
  EXPECT_TRUE(future.IsReady());
  EXPECT_EQ(**future.Peek(), "v");
  std::string seen;
  future.OnComplete([&](const SharedResult<std::string>& r) { seen = **r; });
  EXPECT_EQ(seen, "v");
  EXPECT_EQ(**future.Await(), "v");
  EXPECT_EQ(**future.Peek(), "v");
}

TEST(PitfallTest, P18ConsumersLeavingNeverBreakALateProducer) {
  FakeTimerQueue timers;
  Group group({}, timers);
  std::optional<LoadHandle<std::string>> load;
  std::vector<SharedResult<std::string>> got;
  std::vector<FlightWaiter> waiters;
  for (int i = 0; i < 5; ++i) {
    waiters.push_back(
        group
            .Join(
                "k", [&](LoadHandle<std::string>&& h) { load.emplace(std::move(h)); }, Record(&got))
            .waiter);
  }
  for (auto& w : waiters) {
    w.Cancel();
    w.Cancel();  // leaving twice is harmless
  }
  EXPECT_EQ(got.size(), 5u);
  EXPECT_FALSE(load->Complete(std::string("late")));  // safe, and rejected
  EXPECT_EQ(got.size(), 5u);
}

TEST(PitfallTest, P19ALoadThatThrowsAfterPartialWorkStillAnswersEveryWaiter) {
  ThreadTimerQueue timers;
  Group group({.load_timeout = absl::Seconds(60)}, timers);
  std::atomic<bool> partial_work_done{false};
  absl::BlockingCounter answered(3);
  std::vector<SharedResult<std::string>> got(3);
  absl::Notification all_joined;
  for (int i = 0; i < 3; ++i) {
    group.Join(
        "k",
        [&](LoadHandle<std::string>&& h) {
          // The load continues on the timer thread, does some work, then throws with the handle
          // on its stack; the timer queue swallows the exception.
          timers.RunAfter(absl::Milliseconds(1), [&, h = std::move(h)]() mutable {
            all_joined.WaitForNotification();
            LoadHandle<std::string> mine = std::move(h);
            partial_work_done = true;
            throw std::runtime_error("failed half way");
          });
        },
        [&, i](const SharedResult<std::string>& r, Group::Outcome) {
          got[i] = r;
          answered.DecrementCount();
        });
  }
  all_joined.Notify();
  answered.Wait();
  EXPECT_TRUE(partial_work_done.load());
  for (auto& r : got) EXPECT_EQ(r->status().code(), absl::StatusCode::kInternal);
}

TEST(PitfallTest, P20TheValueIsPublishedBeforeCompletionIsObservable) {
  // Under ThreadSanitizer a missing happens-before between the producer's writes and a waiter's
  // reads is reported as a race; in any build a torn read fails the checks.
  for (int round = 0; round < 200; ++round) {
    Promise<std::vector<int>> promise;
    Future<std::vector<int>> future = promise.GetFuture();
    std::atomic<int> checked{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
      readers.emplace_back([&] {
        SharedResult<std::vector<int>> r = future.Await();
        int sum = 0;
        for (int v : **r) sum += v;
        if (sum == 64 * round) checked++;
      });
    }
    std::thread producer([&] {
      std::vector<int> value(64, round);  // written on the producer thread
      promise.Complete(std::move(value));
    });
    future.OnComplete([&](const SharedResult<std::vector<int>>& r) {
      if ((**r)[63] == round) checked++;
    });
    producer.join();
    for (auto& t : readers) t.join();
    ASSERT_EQ(checked.load(), 4) << "round " << round;
  }
}

}  // namespace
}  // namespace flightcache
