// Regression tests from the review of the transport-free core (see /work/notes/core-review.md).
//
// Each test named after a bug demonstrates one defect found in review and fails on the code as
// reviewed (commit 7fb0d21); the fixes are proposed in the notes. Two tests are guards that pass
// either way: AbandonedLoadStillCountsAsCancelled (keeps the fix for bug 4 honest) and the stress
// test. They are deterministic: fake or hand-driven timers, origins the test answers by hand, and
// explicit gates instead of sleeps. Where a defect would make the code under test hang or touch
// freed memory, the test bounds its wait with a generous timeout and then unblocks (or
// deliberately leaks) what it must, so that it fails cleanly instead.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "flightcache/flight_cache.h"
#include "flightcache/origin.h"
#include "flightcache/single_flight.h"
#include "flightcache/timer_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"

namespace flightcache {
namespace {

using testing::FakeOrigin;
using testing::FakeTimerQueue;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Helpers

// What one FlightCache::Get delivered.
struct Reply {
  std::atomic<int> calls{0};
  absl::Mutex mu;
  GetResult result ABSL_GUARDED_BY(mu);

  FlightCache::Callback Callback() {
    return [this](GetResult r) {
      {
        absl::MutexLock lock(&mu);
        result = std::move(r);
      }
      calls++;
    };
  }
  absl::Status status() {
    absl::MutexLock lock(&mu);
    return result.status;
  }
  std::string value() {
    absl::MutexLock lock(&mu);
    return std::string(result.value ? *result.value : "<null>");
  }
};

// An Origin that, like a real RPC client, acknowledges cancellation *asynchronously*: a cancelled
// fetch only records that it was asked to stop, and stays in flight at the origin until the test
// answers it. Tracks how many fetches are in flight at once.
class AsyncCancelOrigin final : public Origin {
 public:
  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    auto call = std::make_shared<Call>();
    call->request = request;
    call->done = std::move(done);
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
    }
    call->on_cancel.emplace(std::move(cancel), [raw = call.get()] { raw->cancel_seen = true; });
  }
  std::string Describe() const override { return "async-cancel://"; }

  // Ends fetch `i` (0-based) with `result`; the origin call is no longer in flight.
  void Answer(size_t i, absl::StatusOr<FetchResult> result) {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      call = calls_.at(i);
      --in_flight_;
    }
    FetchCallback done = std::move(call->done);
    done(std::move(result));
  }
  size_t fetches() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  int max_in_flight() const {
    absl::MutexLock lock(&mu_);
    return max_in_flight_;
  }
  bool cancel_seen(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i)->cancel_seen.load();
  }
  std::string key(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i)->request.key;
  }

 private:
  struct Call {
    FetchRequest request;
    FetchCallback done;
    std::atomic<bool> cancel_seen{false};
    std::optional<std::stop_callback<std::function<void()>>> on_cancel;
  };
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// A clock that stands still and can hold one chosen thread inside Now(): the test arms it for a
// thread, and that thread's next Now() blocks until Release(). Used to stop a thread at a precise
// point of the code under test.
class GateClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    if (armed_ && std::this_thread::get_id() == thread_) {
      armed_ = false;
      blocked_ = true;
      mu_.Await(absl::Condition(&released_));
      blocked_ = false;
    }
    return absl::UnixEpoch() + absl::Hours(1);
  }
  void ArmForThisThread() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
    thread_ = std::this_thread::get_id();
  }
  void WaitUntilBlocked() const {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&blocked_));
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

 private:
  mutable absl::Mutex mu_;
  mutable bool armed_ ABSL_GUARDED_BY(mu_) = false;
  mutable bool blocked_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id thread_ ABSL_GUARDED_BY(mu_);
};

// A TimerQueue whose timers run only when the test calls RunEarliest(), on the calling thread.
class ManualTimerQueue final : public TimerQueue {
 public:
  explicit ManualTimerQueue(const Clock& clock) : clock_(clock) {}

  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) override {
    absl::MutexLock lock(&mu_);
    const TimerId id = next_id_++;
    timers_.emplace(std::make_pair(when, id), std::move(fn));
    return id;
  }
  bool Cancel(TimerId id) override {
    absl::AnyInvocable<void()> dropped;
    absl::MutexLock lock(&mu_);
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        dropped = std::move(it->second);
        timers_.erase(it);
        return true;
      }
    }
    return false;
  }
  const Clock& clock() const override { return clock_; }

  // Runs the earliest pending timer (whatever its time); false if there is none.
  bool RunEarliest() {
    absl::AnyInvocable<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      if (timers_.empty()) return false;
      fn = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
    }
    fn();
    return true;
  }
  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return timers_.size();
  }

 private:
  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void()>> timers_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

FlightCacheOptions SmallOptions() {
  FlightCacheOptions o;
  o.cache.capacity_bytes = 1 << 20;
  return o;
}

// ---------------------------------------------------------------------------------------------
// SingleFlightGroup

using Group = SingleFlightGroup<std::string>;

// Bug 1a. CancelAll() (and so ~SingleFlightGroup) only walks the table, but Detach() has taken an
// invalidated flight out of it: that flight is neither cancelled nor answered when the group is
// destroyed. Its waiters are stranded until the load answers, and the late answer then runs the
// group's hooks (in FlightCache: members of the destroyed cache) although the header promises
// that completing a LoadHandle after the group is gone is a no-op.
TEST(CoreReviewGroupTest, DestroyingTheGroupAlsoCancelsDetachedFlights) {
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

// Bug 5 (statistics). Leave() fires the stop token *before* it completes the abandoned flight.
// A loader that reacts to its stop token at once (as the limiter does for a queued load: it
// answers CANCELLED from inside the stop callback) then completes the flight first, and the
// group's own Finish() loses: `abandoned` is never counted.
TEST(CoreReviewGroupTest, AbandonedCountIncludesLoadsThatStopInline) {
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

// ---------------------------------------------------------------------------------------------
// FlightCache

// Bug 1b. The same hole seen from FlightCache: ~FlightCache cancels the loads in the table and
// then waits for every origin fetch to end — but an invalidated (detached) load is not in the
// table, so its fetch is never cancelled and the destructor waits until the origin answers on its
// own (with a fake timer queue: forever; in the server: up to --load-timeout at shutdown).
TEST(CoreReviewCacheTest, DestroyingTheCacheCancelsInvalidatedLoads) {
  FakeTimerQueue timers;
  FakeOrigin origin;
  auto cache = std::make_unique<FlightCache>(SmallOptions(), origin, timers);
  Reply reply;
  cache->Get("k", reply.Callback());
  ASSERT_EQ(origin.fetches(), 1);
  EXPECT_EQ(cache->Invalidate({"k"}), 0);  // nothing cached yet: the load is detached

  absl::Notification destroyed;
  std::thread destroyer([&] {
    cache.reset();
    destroyed.Notify();
  });
  const bool in_time = destroyed.WaitForNotificationWithTimeout(absl::Seconds(3));
  EXPECT_TRUE(in_time) << "~FlightCache is stuck waiting for an invalidated load's fetch that "
                          "it never cancelled";
  if (!in_time) origin.AnswerValue(0, "late");  // unblock the destructor
  destroyer.join();
  EXPECT_TRUE(origin.cancelled(0));
  EXPECT_EQ(reply.calls, 1);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kCancelled);
}

// Bug 2. The primary fetch's concurrency permit is released when the hedger *decides* (the load
// was cancelled, or a hedge won), not when the origin call has ended. An origin that acknowledges
// a cancellation asynchronously — every RPC client does — still has the cancelled call in flight
// when the next queued load is handed the permit: the origin sees K+1 concurrent fetches
// (spec, Load semantics 6: at most --max-concurrent-loads origin fetches in flight).
TEST(CoreReviewCacheTest, PrimaryPermitIsHeldUntilItsOriginCallHasEnded) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  FlightCacheOptions o = SmallOptions();
  o.max_concurrent_loads = 1;
  FlightCache cache(o, origin, timers);
  Reply a, b;
  GetHandle ha = cache.Get("a", a.Callback());
  cache.Get("b", b.Callback());
  ASSERT_EQ(origin.fetches(), 1u);
  ASSERT_EQ(cache.stats().loads_queued, 1);

  ha.Cancel();  // a's only waiter leaves: its origin call is cancelled...
  ASSERT_TRUE(origin.cancel_seen(0));
  // ...but it is still in flight at the origin until the origin acknowledges.
  EXPECT_EQ(origin.fetches(), 1u) << "b's fetch started while a's cancelled fetch was in flight";
  EXPECT_LE(origin.max_in_flight(), 1);

  origin.Answer(0, absl::CancelledError("cancelled"));  // now a's call has ended
  ASSERT_EQ(origin.fetches(), 2u);
  EXPECT_EQ(origin.key(1), "b");
  origin.Answer(1, FetchResult{"vb", absl::ZeroDuration()});
  EXPECT_EQ(b.value(), "vb");
  EXPECT_LE(origin.max_in_flight(), 1);
}

// Bug 2, second path: a hedge wins, the primary is cancelled, and its permit is handed on at once
// although the cancelled primary call is still in flight at the origin.
TEST(CoreReviewCacheTest, BeatenPrimaryKeepsItsPermitUntilItsCallHasEnded) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  FlightCacheOptions o = SmallOptions();
  o.max_concurrent_loads = 2;
  o.hedge.enabled = true;
  o.hedge.delay = absl::Milliseconds(20);
  FlightCache cache(o, origin, timers);
  Reply a, b, c;
  cache.Get("a", a.Callback());
  timers.Advance(absl::Milliseconds(20));  // the hedge goes out: both permits in use
  ASSERT_EQ(origin.fetches(), 2u);
  cache.Get("b", b.Callback());  // queued
  cache.Get("c", c.Callback());  // queued
  ASSERT_EQ(cache.stats().loads_queued, 2);

  origin.Answer(1, FetchResult{"va", absl::ZeroDuration()});  // the hedge wins
  EXPECT_EQ(a.value(), "va");
  ASSERT_TRUE(origin.cancel_seen(0));  // the primary is cancelled but its call has not ended
  // The hedge's call has ended, so one permit is free (b starts); the primary's is not (c waits).
  EXPECT_EQ(origin.fetches(), 3u);
  EXPECT_LE(origin.max_in_flight(), 2)
      << "the beaten primary's permit was handed on while its call was still in flight";
  origin.Answer(0, absl::CancelledError("cancelled"));
  ASSERT_EQ(origin.fetches(), 4u);
  origin.Answer(2, FetchResult{"vb", absl::ZeroDuration()});
  origin.Answer(3, FetchResult{"vc", absl::ZeroDuration()});
  EXPECT_EQ(b.value(), "vb");
  EXPECT_EQ(c.value(), "vc");
  EXPECT_LE(origin.max_in_flight(), 2);
}

// Bug 3. ~FlightCache waits only for origin fetches in flight. A hedge timer that fired just
// before shutdown has decided to send the hedge (permit taken, token spent) but not yet counted
// its fetch; the destructor sees no fetch outstanding, destroys the hedger, limiter and the rest,
// and the hedge then runs on freed memory (Impl::Fetch, Hedger stats, Permit release). The test
// holds the timer thread at the first instruction of Impl::Fetch (its clock read) and checks
// that the destructor waits for it.
TEST(CoreReviewCacheTest, DestructionWaitsForAHedgeThatIsBeingSent) {
  // Heap-allocated and deliberately leaked if the bug shows: the held thread still refers to them.
  auto* clock = new GateClock();
  auto* timers = new ManualTimerQueue(*clock);
  auto* origin = new FakeOrigin();
  FlightCacheOptions o = SmallOptions();
  o.max_concurrent_loads = 4;
  o.hedge.enabled = true;
  o.hedge.delay = absl::Milliseconds(20);
  auto cache = std::make_unique<FlightCache>(o, *origin, *timers);
  auto reply = std::make_shared<Reply>();
  cache->Get("k", reply->Callback());
  ASSERT_EQ(origin->fetches(), 1);
  ASSERT_EQ(timers->pending(), 2u);  // the hedge delay and the load timeout

  std::thread timer_thread([clock, timers] {
    clock->ArmForThisThread();
    timers->RunEarliest();  // the hedge timer: decides to hedge, then enters Impl::Fetch
  });
  clock->WaitUntilBlocked();

  absl::Notification destroyed;
  std::thread destroyer([&] {
    cache.reset();
    destroyed.Notify();
  });
  const bool returned_early = destroyed.WaitForNotificationWithTimeout(absl::Seconds(1));
  EXPECT_FALSE(returned_early)
      << "~FlightCache returned while a hedge was being sent: the hedge now runs on a destroyed "
         "FlightCache";
  if (returned_early) {
    // Releasing the timer thread would make it use freed memory: leave it parked for good.
    destroyer.join();
    timer_thread.detach();
    return;
  }
  clock->Release();
  const bool finished = destroyed.WaitForNotificationWithTimeout(absl::Seconds(30));
  EXPECT_TRUE(finished) << "~FlightCache did not finish once the hedge could go on";
  if (!finished) {
    destroyer.detach();
    timer_thread.detach();
    return;
  }
  destroyer.join();
  timer_thread.join();
  EXPECT_EQ(reply->calls, 1);
  EXPECT_EQ(reply->status().code(), absl::StatusCode::kCancelled);
  delete timers;  // drops the load-timeout timer's closure
  delete origin;
  delete clock;
}

// Bug 4. An origin that answers CANCELLED on its own (its server shut down, a proxy reset the
// stream) — not because flightcache cancelled it — reaches the waiters that are still waiting as
// CANCELLED, counted as loads_cancelled. The spec's status table has CANCELLED for no such case:
// a failed origin is UNAVAILABLE naming the origin's error (and the server would report the
// CANCELLED to its client as "call cancelled by the client").
TEST(CoreReviewCacheTest, OriginCancelledForAWaiterThatStayedIsUnavailable) {
  FakeTimerQueue timers;
  FakeOrigin origin;
  FlightCache cache(SmallOptions(), origin, timers);
  Reply reply;
  cache.Get("k", reply.Callback());
  origin.Answer(0, absl::CancelledError("upstream reset the stream"));
  ASSERT_EQ(reply.calls, 1);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_THAT(std::string(reply.status().message()), HasSubstr("fake://"));
  EXPECT_EQ(cache.stats().loads_failed, 1);
  EXPECT_EQ(cache.stats().loads_cancelled, 0);
}

// Guard for the fix of bug 4: a load that *we* cancel (its last waiter left, or shutdown) must
// still count as cancelled, not failed, whatever the origin answers afterwards.
TEST(CoreReviewCacheTest, AbandonedLoadStillCountsAsCancelled) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  FlightCache cache(SmallOptions(), origin, timers);
  Reply reply;
  GetHandle handle = cache.Get("k", reply.Callback());
  handle.Cancel();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kCancelled);
  origin.Answer(0, absl::CancelledError("cancelled"));
  EXPECT_EQ(cache.stats().loads_cancelled, 1);
  EXPECT_EQ(cache.stats().loads_failed, 0);
  EXPECT_EQ(cache.stats().loads_inflight, 0);
}

// ---------------------------------------------------------------------------------------------
// Stress: passes on the reviewed code too; a guard for the fixes above, meant for the TSan run.
// (Under TSan it needs the tsan_absl_sync.cc fix from the notes: without it, absl::Mutex
// destructors racing on Abseil's deadlock graph give a false report in a few percent of runs.)

// An Origin that answers from its own thread a little later, and acknowledges cancellation
// asynchronously (as an RPC client does). Values name the fetch's sequence number, so a test can
// tell which fetch produced the value a caller got.
class ThreadedOrigin final : public Origin {
 public:
  ThreadedOrigin() : worker_([this] { Loop(); }) {}
  ~ThreadedOrigin() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    worker_.join();
  }
  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    absl::MutexLock lock(&mu_);
    const int64_t seq = ++seq_;
    pending_.push_back(Call{seq, request.key, std::move(cancel), std::move(done),
                            absl::Now() + absl::Microseconds(50 * (seq % 7))});
  }
  std::string Describe() const override { return "threaded://"; }
  int64_t seq() const {
    absl::MutexLock lock(&mu_);
    return seq_;
  }

 private:
  struct Call {
    int64_t seq;
    std::string key;
    std::stop_token cancel;
    FetchCallback done;
    absl::Time due;
  };
  void Loop() {
    while (true) {
      std::vector<Call> ready;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_ && pending_.empty()) return;
        const absl::Time now = absl::Now();
        for (auto it = pending_.begin(); it != pending_.end();) {
          if (stopping_ || it->due <= now || it->cancel.stop_requested()) {
            ready.push_back(std::move(*it));
            it = pending_.erase(it);
          } else {
            ++it;
          }
        }
      }
      for (Call& call : ready) {
        if (call.cancel.stop_requested()) {
          call.done(absl::CancelledError("cancelled"));
        } else if (call.seq % 11 == 0) {
          call.done(absl::UnavailableError("flaky"));
        } else {
          call.done(FetchResult{absl::StrCat(call.key, "@", call.seq), absl::ZeroDuration()});
        }
      }
      if (ready.empty()) absl::SleepFor(absl::Microseconds(50));
    }
  }

  mutable absl::Mutex mu_;
  int64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Call> pending_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

// Gets (some cancelled at once), Invalidates and origin answers race; hedging and a short load
// timeout are on, and the cache is destroyed while loads are still in flight. Checks that every
// `done` runs exactly once and that a Get issued after Invalidate(key) returned never gets a value
// from a fetch that started before that Invalidate began.
TEST(CoreReviewStressTest, GetInvalidateCancelAndCompleteRace) {
  ThreadTimerQueue timers;
  ThreadedOrigin origin;
  FlightCacheOptions o = SmallOptions();
  o.max_concurrent_loads = 1000;            // no queueing: a fetch starts when its load starts
  o.default_ttl = absl::Microseconds(500);  // entries expire quickly: many loads
  o.load_timeout = absl::Milliseconds(3);
  o.hedge.enabled = true;
  o.hedge.delay = absl::Microseconds(200);
  o.hedge.max_tokens = 1000;
  o.hedge.budget = 1;
  auto cache = std::make_unique<FlightCache>(o, origin, timers);

  constexpr int kThreads = 3;
  constexpr int kRounds = 3000;
  struct Call {
    std::atomic<int> calls{0};
  };
  std::vector<std::unique_ptr<Call>> calls;
  absl::Mutex calls_mu;
  std::atomic<int> stale{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string key = absl::StrCat("k", (i + t) % 4);
        auto call = std::make_unique<Call>();
        Call* raw = call.get();
        {
          absl::MutexLock lock(&calls_mu);
          calls.push_back(std::move(call));
        }
        if (t == 0 && i % 3 == 0) {
          // Invalidate, then Get: the value must come from a fetch that started afterwards.
          const int64_t before = origin.seq();
          cache->Invalidate({key});
          cache->Get(key, [raw, before, key, &stale](GetResult r) {
            raw->calls++;
            if (r.status.ok()) {
              const std::string_view v = *r.value;
              const int64_t seq = std::stoll(std::string(v.substr(v.find('@') + 1)));
              if (seq <= before) stale++;
            }
          });
          continue;
        }
        GetHandle h = cache->Get(key, [raw](GetResult) { raw->calls++; });
        if (i % 4 == t % 4) h.Cancel();
      }
    });
  }
  for (auto& th : threads) th.join();
  cache.reset();  // loads may still be in flight
  absl::MutexLock lock(&calls_mu);
  int not_once = 0;
  for (auto& c : calls) not_once += c->calls != 1;
  EXPECT_EQ(not_once, 0) << "callbacks that did not run exactly once";
  EXPECT_EQ(stale, 0) << "Gets after Invalidate that saw an older load's value";
}

// ---------------------------------------------------------------------------------------------
// ThreadTimerQueue

// Bug 6 (memory). A cancelled timer's heap entry stays until its due time. Every load schedules a
// --load-timeout timer and cancels it when it completes, so the heap holds every load of the last
// --load-timeout, not the loads in flight: O(rate x timeout) memory (e.g. 10k loads/s with a 10
// minute timeout: 6M entries, ~100 MB) although only a handful of timers are live.
TEST(CoreReviewTimerQueueTest, CancelledTimersDoNotAccumulate) {
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
