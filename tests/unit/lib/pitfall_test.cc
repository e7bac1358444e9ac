// One regression test per item of the twenty pitfalls of futures (docs/DESIGN.md lists them),
// plus the core's own guarantees that the same mistakes would break: refcounted cancellation
// and the Invalidate fence. Items 7 and 8 live in pitfall_limiter_hedger_test.cc, item 15 in
// sharded_cache_test.cc. Every wait is bounded; time is a FakeTimerQueue wherever the test is
// about time. tests/mutants/ holds broken versions of lib/ that these tests must catch.
#include <atomic>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "flightcache/flight.h"
#include "flightcache/flight_cache.h"
#include "gtest/gtest.h"
#include "internal/single_flight.h"
#include "tests/testing/await.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

using Group = SingleFlightGroup<std::string>;
using testing::AnyResult;
using testing::AwaitAll;
using testing::AwaitAllMode;
using testing::AwaitAny;
using testing::FakeOrigin;
using testing::FakeTimerQueue;
using testing::kTestWait;
using testing::Latch;
using testing::PendingFlight;

// A bounded wait for a future the test completes itself.
CallContext Bounded() { return CallContext::WithTimeout(kTestWait); }

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
      SharedResult<std::string> a = future.Await(Bounded());
      SharedResult<std::string> b = future.Await(Bounded());  // a second await does not hang
      ASSERT_TRUE(a->ok()) << a->status();
      EXPECT_EQ(a.get(), b.get());
      seen[i] = a.get();
    });
  }
  promise.Complete(std::string("v"));
  for (auto& t : threads) t.join();
  for (const void* p : seen) EXPECT_EQ(p, future.Peek().get());
  EXPECT_EQ(**future.Peek(), "v");
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
  Latch before_ready(50);
  auto woke_with_v = [&](const SharedResult<std::string>& r) {
    if (r->ok() && **r == "v") woke++;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      future.OnComplete(woke_with_v);
      before_ready.CountDown();
      woke_with_v(future.Await(Bounded()));
    });
  }
  ASSERT_TRUE(before_ready.WaitFor()) << "the waiting threads did not start";
  promise.Complete(std::string("v"));
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] { woke_with_v(future.Await(Bounded())); });
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
  // And on the caller's own thread, when the fetch starts at once.
  cache.Get("boom", [&](GetResult r) { got.push_back(r); });
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[3].status.code(), absl::StatusCode::kInternal) << got[3].status;
  EXPECT_EQ(cache.stats().loads_inflight, 0);
  EXPECT_EQ(cache.stats().entries, 1) << "only the blocker's value is cached";
}

// The caller's deadline is a timer on the load's own (fake) clock that makes the caller leave,
// as the server's deadline timer does; the impatient caller starts the load, the patient one joins
// it, and the load must outlive the first deadline.
// The other place a load can throw: the loader itself, on the caller's thread, before any origin.
TEST(PitfallTest, P11LoaderThatThrowsIsInternalForEveryWaiter) {
  FakeTimerQueue timers;
  Group group({}, timers);
  std::vector<SharedResult<std::string>> got;
  group.Join(
      "k", [](LoadHandle<std::string>&&) { throw std::runtime_error("loader bug"); }, Record(&got));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(got[0]->status().message().find("loader bug"), absl::string_view::npos);
  EXPECT_EQ(group.size(), 0u);
  EXPECT_EQ(group.stats().inflight, 0);
}

TEST(PitfallTest, P12SharedLoadOutlivesTheFirstCallersDeadline) {
  FakeOrigin origin;
  FakeTimerQueue timers;
  FlightCacheOptions options;
  options.load_timeout = absl::Seconds(5);
  FlightCache cache(options, origin, timers);
  std::vector<GetResult> impatient, patient;
  const absl::Time start = timers.clock().Now();
  GetHandle first = cache.Get("k", [&](GetResult r) { impatient.push_back(std::move(r)); });
  timers.RunAfter(absl::Milliseconds(20), [&] { first.Cancel(); });  // its deadline
  cache.Get("k", [&](GetResult r) { patient.push_back(std::move(r)); });
  ASSERT_EQ(origin.fetches(), 1);
  EXPECT_EQ(cache.stats().coalesced, 1);
  EXPECT_EQ(origin.request(0).deadline, start + absl::Seconds(5)) << "not the load's own timeout";

  timers.Advance(absl::Milliseconds(200));  // far past the first deadline
  ASSERT_EQ(impatient.size(), 1u);
  EXPECT_EQ(impatient[0].status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(patient.empty());
  EXPECT_FALSE(origin.cancelled(0)) << "the first caller's deadline cancelled the shared load";
  ASSERT_TRUE(origin.AnswerValue(0, "v"));
  ASSERT_EQ(patient.size(), 1u);
  ASSERT_TRUE(patient[0].status.ok()) << patient[0].status;
  EXPECT_EQ(*patient[0].value, "v");
  EXPECT_EQ(patient[0].source, Source::kCoalesced);
  EXPECT_EQ(origin.fetches(), 1);
}

// The refcount half of P12: when the last waiter leaves, the load is cancelled and taken out of
// the table in the same step, so a caller that comes a moment later starts a fresh load instead
// of joining a doomed one (and waiting for an answer that never comes).
TEST(PitfallTest, P12LastWaiterLeavingCancelsTheLoadAndLateCallersStartAFreshOne) {
  FakeTimerQueue timers;
  Group group({.load_timeout = absl::Seconds(5)}, timers);
  std::vector<LoadHandle<std::string>> loads;
  auto loader = [&loads](LoadHandle<std::string>&& h) { loads.push_back(std::move(h)); };
  std::vector<SharedResult<std::string>> early, late;
  std::optional<Group::Joined> fresh;
  Group::Joined first = group.Join("k", loader, Record(&early));
  // The last waiter's own answer runs after the group saw the waiter count reach zero and before
  // the load is finished: a caller arriving just then (here, from inside that answer) must start
  // a fresh load, not join the doomed one and be answered CANCELLED.
  Group::Joined second =
      group.Join("k", loader, [&](const SharedResult<std::string>& r, Group::Outcome) {
        early.push_back(r);
        fresh.emplace(group.Join("k", loader, Record(&late)));
      });
  EXPECT_EQ(second.outcome, Group::Outcome::kJoined);
  first.waiter.Cancel();
  ASSERT_EQ(loads.size(), 1u);
  EXPECT_FALSE(loads[0].cancelled()) << "a waiter is still there";
  second.waiter.Cancel();
  EXPECT_TRUE(loads[0].cancelled()) << "the last waiter left: the load must stop";
  ASSERT_TRUE(fresh.has_value());
  EXPECT_EQ(fresh->outcome, Group::Outcome::kStarted) << "joined a cancelled load";
  EXPECT_TRUE(late.empty()) << "the late caller was answered by the cancelled load: "
                            << (late.empty() ? "" : late[0]->status().ToString());
  EXPECT_EQ(group.size(), 1u);
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_FALSE(loads[0].Complete(std::string("old")));
  EXPECT_TRUE(loads[1].Complete(std::string("new")));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(**late[0], "new");
}

// Invalidate is a fence: a load that started before it still answers the callers that joined it,
// but its result is stored nowhere, and a Get after Invalidate returned starts a new load.
TEST(PitfallTest, InvalidateFencesOffLoadsStartedBeforeIt) {
  FakeOrigin origin;
  FakeTimerQueue timers;
  FlightCache cache(FlightCacheOptions(), origin, timers);
  std::vector<GetResult> before, after, later;
  cache.Get("k", [&](GetResult r) { before.push_back(std::move(r)); });
  cache.Invalidate({std::string("k")});
  cache.Get("k", [&](GetResult r) { after.push_back(std::move(r)); });
  ASSERT_EQ(origin.fetches(), 2) << "a Get after Invalidate joined the older load";
  ASSERT_TRUE(origin.AnswerValue(0, "old"));
  ASSERT_EQ(before.size(), 1u);
  ASSERT_TRUE(before[0].status.ok()) << before[0].status;
  EXPECT_EQ(*before[0].value, "old");
  cache.Get("k", [&](GetResult r) { later.push_back(std::move(r)); });
  EXPECT_TRUE(later.empty()) << "the invalidated load's value was stored";
  ASSERT_TRUE(origin.AnswerValue(1, "new"));
  ASSERT_EQ(after.size(), 1u);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(*after[0].value, "new");
  EXPECT_EQ(*later[0].value, "new");
  EXPECT_EQ(cache.stats().entries, 1);
}

// A clock that holds one chosen thread inside Now() until another thread reads it too (or
// `patience` passes). The cache reads its clock just before taking a shard lock, so holding a
// load's store there shows whether an Invalidate can run its cache erase meanwhile.
class GateClock final : public Clock {
 public:
  GateClock(const Clock& base, absl::Duration patience) : base_(base), patience_(patience) {}

  absl::Time Now() const override {
    bool other_read = false;
    {
      absl::MutexLock lock(&mu_);
      if (std::this_thread::get_id() == gated_) {
        gated_ = std::thread::id();
        entered_ = true;
        other_read = mu_.AwaitWithTimeout(absl::Condition(&other_read_), patience_);
      } else if (entered_) {
        other_read_ = true;
      }
    }
    // Give the other thread time to finish the cache call it is in.
    if (other_read) absl::SleepFor(kAfterOther);
    return base_.Now();
  }
  void GateThisThread() {
    absl::MutexLock lock(&mu_);
    gated_ = std::this_thread::get_id();
  }
  bool WaitUntilEntered() const {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&entered_), kTestWait);
  }

 private:
  static constexpr absl::Duration kAfterOther = absl::Milliseconds(50);
  const Clock& base_;
  const absl::Duration patience_;
  mutable absl::Mutex mu_;
  mutable std::thread::id gated_ ABSL_GUARDED_BY(mu_);
  mutable bool entered_ ABSL_GUARDED_BY(mu_) = false;
  mutable bool other_read_ ABSL_GUARDED_BY(mu_) = false;
};

// The other half of the fence: Invalidate's cache erase and its detach of the load happen in one
// critical section with the load's store. Otherwise a load completing between the two stores its
// value after the erase and before the detach, and that value outlives the Invalidate.
TEST(PitfallTest, InvalidateCannotSlipBetweenALoadsStoreAndItsEnd) {
  FakeOrigin origin;
  FakeTimerQueue timers;
  GateClock ttl_clock(timers.clock(), /*patience=*/absl::Milliseconds(300));
  // Before the cache: its destructor answers the last Get (CANCELLED) into this vector.
  std::vector<GetResult> got;
  FlightCache cache(FlightCacheOptions(), origin, timers, nullptr, &ttl_clock);
  cache.Get("k", [](GetResult) {});
  std::thread completer([&] {
    ttl_clock.GateThisThread();
    origin.AnswerValue(0, "old");  // held inside the store, under the load's lock
  });
  const bool entered = ttl_clock.WaitUntilEntered();
  if (entered) cache.Invalidate({std::string("k")});
  completer.join();
  ASSERT_TRUE(entered) << "the load never stored its value";
  cache.Get("k", [&](GetResult r) { got.push_back(std::move(r)); });
  EXPECT_TRUE(got.empty()) << "a value loaded before Invalidate returned was served after it";
  EXPECT_EQ(origin.fetches(), 2);
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
  FakeTimerQueue timers;
  FlightCache cache(FlightCacheOptions(), origin, timers);
  std::vector<GetResult> got;
  GetHandle only = cache.Get("k", [&](GetResult r) { got.push_back(std::move(r)); });
  timers.RunAfter(absl::Milliseconds(10), [&] { only.Cancel(); });  // the caller's deadline
  timers.Advance(absl::Milliseconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(origin.cancelled(0));             // the last waiter left: the load was told to stop
  EXPECT_FALSE(origin.AnswerValue(0, "late"));  // a producer answering late is not stuck
  FlightCacheStats s = cache.stats();
  EXPECT_EQ(s.loads_inflight, 0);
  EXPECT_EQ(s.loads_queued, 0);
  EXPECT_EQ(s.loads_cancelled, 1);
  EXPECT_EQ(s.entries, 0);
  EXPECT_EQ(timers.pending(), 0u) << "the load's timeout timer outlived it";
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
  FakeTimerQueue timers;
  Group group({.load_timeout = absl::Seconds(60)}, timers);
  std::optional<LoadHandle<std::string>> parked;
  std::vector<SharedResult<std::string>> got;
  for (int i = 0; i < 3; ++i) {
    group.Join(
        "k", [&](LoadHandle<std::string>&& h) { parked.emplace(std::move(h)); }, Record(&got));
  }
  // Later, elsewhere, the load does part of its work and throws with the handle on its stack;
  // whoever catches the exception (a thread pool, a timer queue) only logs it.
  bool partial_work_done = false;
  auto resume = [&] {
    LoadHandle<std::string> mine = *std::move(parked);
    parked.reset();
    partial_work_done = true;
    throw std::runtime_error("failed half way");
  };
  EXPECT_THROW(resume(), std::runtime_error);
  EXPECT_TRUE(partial_work_done);
  ASSERT_EQ(got.size(), 3u) << "a waiter was left hanging";
  for (auto& r : got) EXPECT_EQ(r->status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(group.stats().inflight, 0);
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
        SharedResult<std::vector<int>> r = future.Await(Bounded());
        if (!r->ok()) return;
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
