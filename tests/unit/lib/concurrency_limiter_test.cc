#include "flightcache/concurrency_limiter.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

using Permit = ConcurrencyLimiter::Permit;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// What one acquirer was given. Single-threaded tests only.
struct Grant {
  int calls = 0;
  absl::Status status;  // OK when a permit was granted
  Permit permit;
};

ConcurrencyLimiter::GrantCallback Record(Grant* grant, std::vector<int>* order = nullptr,
                                         int id = 0) {
  return [grant, order, id](absl::StatusOr<Permit> p) {
    ++grant->calls;
    if (order != nullptr) order->push_back(id);
    if (p.ok()) {
      grant->permit = *std::move(p);
    } else {
      grant->status = p.status();
    }
  };
}

TEST(ConcurrencyLimiterTest, GrantsUpToKInlineThenQueuesInFifoOrder) {
  ConcurrencyLimiter limiter(/*permits=*/2, /*max_queued=*/10);
  EXPECT_EQ(limiter.permits(), 2);
  std::vector<int> order;
  Grant g[5];
  for (int i = 0; i < 2; ++i) {
    limiter.Acquire({}, Record(&g[i], &order, i));
    ASSERT_EQ(g[i].calls, 1) << "acquirer " << i << " must be granted inline";
    EXPECT_TRUE(g[i].permit.valid());
  }
  for (int i = 2; i < 5; ++i) limiter.Acquire({}, Record(&g[i], &order, i));
  EXPECT_EQ(limiter.in_use(), 2);
  EXPECT_EQ(limiter.queued(), 3);
  for (int i = 2; i < 5; ++i) EXPECT_EQ(g[i].calls, 0);

  g[1].permit.Release();  // the oldest waiter (2) gets it, not a newer one
  EXPECT_EQ(g[2].calls, 1);
  EXPECT_TRUE(g[2].permit.valid());
  EXPECT_EQ(g[3].calls, 0);
  EXPECT_EQ(limiter.in_use(), 2);  // handed over, never freed
  EXPECT_EQ(limiter.queued(), 2);

  g[0].permit.Release();
  g[2].permit.Release();
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3, 4));
  EXPECT_EQ(limiter.queued(), 0);
  EXPECT_EQ(limiter.in_use(), 2);
  g[3].permit.Release();
  g[4].permit.Release();
  EXPECT_EQ(limiter.in_use(), 0);
}

TEST(ConcurrencyLimiterTest, RaisingThePermitsHandsThemToTheQueueInFifoOrder) {
  ConcurrencyLimiter limiter(/*permits=*/1, /*max_queued=*/10);
  std::vector<int> order;
  Grant g[4];
  for (int i = 0; i < 4; ++i) limiter.Acquire({}, Record(&g[i], &order, i));
  ASSERT_EQ(limiter.queued(), 3);

  limiter.SetPermits(3);  // two more: the two oldest waiters, at once
  EXPECT_EQ(limiter.permits(), 3);
  EXPECT_THAT(order, ElementsAre(0, 1, 2));
  EXPECT_EQ(limiter.in_use(), 3);
  EXPECT_EQ(limiter.queued(), 1);

  limiter.SetPermits(10);  // more permits than waiters: the rest stay free
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(limiter.in_use(), 4);
  EXPECT_TRUE(limiter.TryAcquire().has_value());
}

TEST(ConcurrencyLimiterTest, LoweringThePermitsTakesEffectAsPermitsAreReleased) {
  ConcurrencyLimiter limiter(/*permits=*/3, /*max_queued=*/10);
  std::vector<int> order;
  Grant g[5];
  for (int i = 0; i < 5; ++i) limiter.Acquire({}, Record(&g[i], &order, i));
  ASSERT_EQ(limiter.in_use(), 3);

  limiter.SetPermits(1);  // none revoked
  EXPECT_EQ(limiter.in_use(), 3);
  EXPECT_TRUE(g[0].permit.valid() && g[1].permit.valid() && g[2].permit.valid());
  g[0].permit.Release();  // 2 held, K = 1: freed, not handed over
  EXPECT_EQ(limiter.in_use(), 2);
  EXPECT_EQ(limiter.queued(), 2);
  g[1].permit.Release();
  EXPECT_EQ(limiter.in_use(), 1);
  EXPECT_EQ(g[3].calls, 0);
  EXPECT_FALSE(limiter.TryAcquire().has_value());
  g[2].permit.Release();  // at K: handed to the oldest waiter
  EXPECT_EQ(g[3].calls, 1);
  EXPECT_TRUE(g[3].permit.valid());
  EXPECT_EQ(limiter.in_use(), 1);
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3));
}

TEST(ConcurrencyLimiterTest, ACallbackReleasingInlineDuringARaiseHandsItsPermitOn) {
  ConcurrencyLimiter limiter(/*permits=*/1, /*max_queued=*/10);
  Grant first;
  limiter.Acquire({}, Record(&first));
  int released_inline = 0;
  for (int i = 0; i < 3; ++i) {
    limiter.Acquire({}, [&](absl::StatusOr<Permit> p) {
      ASSERT_TRUE(p.ok()) << p.status();
      ++released_inline;  // `p` is released as this callback returns
    });
  }
  limiter.SetPermits(2);  // one new permit, passed on by each callback in turn
  EXPECT_EQ(released_inline, 3);
  EXPECT_EQ(limiter.queued(), 0);
  EXPECT_EQ(limiter.in_use(), 1);  // only `first`
}

// Adaptive LIFO: FIFO while the queue keeps up; once its oldest acquirer has waited longer than
// lifo_after, a released permit goes to the newest instead.
TEST(ConcurrencyLimiterTest, ABacklogOlderThanLifoAfterServesTheNewestFirst) {
  testing::FakeClock clock;
  ConcurrencyLimiter limiter(/*permits=*/1, /*max_queued=*/10,
                             {.lifo_after = absl::Milliseconds(50), .clock = &clock});
  std::vector<int> order;
  Grant g[5];
  limiter.Acquire({}, Record(&g[0], &order, 0));
  for (int i = 1; i < 5; ++i) {
    limiter.Acquire({}, Record(&g[i], &order, i));
    clock.Advance(absl::Milliseconds(10));
  }
  // t = 40 ms: the oldest (1) has waited 40 ms, under lifo_after: FIFO.
  g[0].permit.Release();
  EXPECT_THAT(order, ElementsAre(0, 1));
  EXPECT_EQ(limiter.lifo_handoffs(), 0);
  // t = 100 ms: the oldest now (2) has waited 80 ms: the newest (4) goes first, then 3, then 2.
  clock.Advance(absl::Milliseconds(60));
  g[1].permit.Release();
  g[4].permit.Release();
  g[3].permit.Release();
  EXPECT_THAT(order, ElementsAre(0, 1, 4, 3, 2));
  EXPECT_EQ(limiter.lifo_handoffs(), 3);
  EXPECT_EQ(limiter.queued(), 0);
}

TEST(ConcurrencyLimiterTest, WithoutLifoAfterTheOrderStaysFifoHoweverOldTheQueue) {
  testing::FakeClock clock;
  ConcurrencyLimiter limiter(/*permits=*/1, /*max_queued=*/10, {.clock = &clock});
  std::vector<int> order;
  Grant g[3];
  for (int i = 0; i < 3; ++i) limiter.Acquire({}, Record(&g[i], &order, i));
  clock.Advance(absl::Hours(1));
  g[0].permit.Release();
  g[1].permit.Release();
  EXPECT_THAT(order, ElementsAre(0, 1, 2));
  EXPECT_EQ(limiter.lifo_handoffs(), 0);
}

TEST(ConcurrencyLimiterTest, QueueOverflowIsResourceExhaustedInline) {
  ConcurrencyLimiter limiter(1, /*max_queued=*/2);
  Grant a, b, c, d;
  limiter.Acquire({}, Record(&a));
  limiter.Acquire({}, Record(&b));
  limiter.Acquire({}, Record(&c));
  limiter.Acquire({}, Record(&d));
  ASSERT_EQ(d.calls, 1) << "overflow must be reported inline";
  EXPECT_EQ(d.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status.message(), HasSubstr("load queue full (2 queued)"));
  EXPECT_FALSE(d.permit.valid());
  EXPECT_EQ(limiter.queued(), 2);
  EXPECT_EQ(limiter.in_use(), 1);
  // The queued ones are unaffected.
  a.permit.Release();
  EXPECT_EQ(b.calls, 1);
  EXPECT_TRUE(b.permit.valid());
}

TEST(ConcurrencyLimiterTest, ZeroQueueRejectsAtOnce) {
  ConcurrencyLimiter limiter(1, /*max_queued=*/0);
  Grant a, b;
  limiter.Acquire({}, Record(&a));
  limiter.Acquire({}, Record(&b));
  EXPECT_TRUE(a.permit.valid());
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(b.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(b.status.message(), HasSubstr("load queue full (0 queued)"));
}

TEST(ConcurrencyLimiterTest, CancelWhileQueuedDeliversCancelledAndLeavesQueue) {
  ConcurrencyLimiter limiter(1, 10);
  Grant holder, w1, w2;
  std::stop_source s1;
  limiter.Acquire({}, Record(&holder));
  limiter.Acquire(s1.get_token(), Record(&w1));
  limiter.Acquire({}, Record(&w2));
  EXPECT_EQ(limiter.queued(), 2);

  s1.request_stop();
  ASSERT_EQ(w1.calls, 1);
  EXPECT_EQ(w1.status.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(w1.permit.valid());
  EXPECT_EQ(limiter.queued(), 1);

  holder.permit.Release();  // goes to w2: w1 left the queue
  EXPECT_EQ(w1.calls, 1);
  EXPECT_EQ(w2.calls, 1);
  EXPECT_TRUE(w2.permit.valid());
  w2.permit.Release();
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.queued(), 0);
}

TEST(ConcurrencyLimiterTest, CancelAfterGrantIsHarmless) {
  ConcurrencyLimiter limiter(1, 10);
  std::stop_source inline_stop, queued_stop;
  Grant first, second;
  limiter.Acquire(inline_stop.get_token(), Record(&first));
  limiter.Acquire(queued_stop.get_token(), Record(&second));
  inline_stop.request_stop();
  EXPECT_EQ(first.calls, 1);
  EXPECT_TRUE(first.permit.valid());
  EXPECT_EQ(second.calls, 0);

  first.permit.Release();  // handed over to `second`
  queued_stop.request_stop();
  EXPECT_EQ(second.calls, 1);
  EXPECT_TRUE(second.permit.valid());
  EXPECT_EQ(limiter.in_use(), 1);
  second.permit.Release();
  EXPECT_EQ(limiter.in_use(), 0);
}

TEST(ConcurrencyLimiterTest, AlreadyCancelledTokenIsCancelledInline) {
  ConcurrencyLimiter limiter(1, 10);
  std::stop_source stop;
  stop.request_stop();
  Grant g;
  limiter.Acquire(stop.get_token(), Record(&g));
  ASSERT_EQ(g.calls, 1);
  EXPECT_EQ(g.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.queued(), 0);
}

TEST(ConcurrencyLimiterTest, TryAcquireNeverQueues) {
  ConcurrencyLimiter limiter(1, 10);
  std::optional<Permit> p = limiter.TryAcquire();
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->valid());
  EXPECT_FALSE(limiter.TryAcquire().has_value());
  EXPECT_EQ(limiter.queued(), 0);

  // A free permit goes to a queued acquirer first: TryAcquire does not overtake the queue.
  Grant waiter;
  limiter.Acquire({}, Record(&waiter));
  EXPECT_EQ(limiter.queued(), 1);
  EXPECT_FALSE(limiter.TryAcquire().has_value());
  EXPECT_EQ(limiter.queued(), 1);
  p.reset();
  EXPECT_TRUE(waiter.permit.valid());
  EXPECT_FALSE(limiter.TryAcquire().has_value());
  waiter.permit.Release();
  EXPECT_TRUE(limiter.TryAcquire().has_value());  // and the temporary releases it again
  EXPECT_EQ(limiter.in_use(), 0);
}

TEST(ConcurrencyLimiterTest, PermitMoveAndReleaseSemantics) {
  ConcurrencyLimiter limiter(2, 0);
  Permit empty;
  EXPECT_FALSE(empty.valid());
  empty.Release();  // no-op
  EXPECT_EQ(limiter.in_use(), 0);

  Permit a = *limiter.TryAcquire();
  Permit moved(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_TRUE(moved.valid());
  EXPECT_EQ(limiter.in_use(), 1);
  moved.Release();
  EXPECT_FALSE(moved.valid());
  EXPECT_EQ(limiter.in_use(), 0);
  moved.Release();  // idempotent: must not free a second permit
  EXPECT_EQ(limiter.in_use(), 0);

  Permit x = *limiter.TryAcquire();
  Permit y = *limiter.TryAcquire();
  EXPECT_EQ(limiter.in_use(), 2);
  x = std::move(y);  // x's old permit is released, y's is taken over
  EXPECT_TRUE(x.valid());
  EXPECT_FALSE(y.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(limiter.in_use(), 1);
  { Permit scoped = std::move(x); }  // destruction releases
  EXPECT_EQ(limiter.in_use(), 0);
}

TEST(ConcurrencyLimiterTest, GrantedCallbackMayReacquire) {
  ConcurrencyLimiter limiter(1, 10);
  Grant holder, again;
  int first_calls = 0;
  limiter.Acquire({}, Record(&holder));
  limiter.Acquire({}, [&](absl::StatusOr<Permit> p) {
    ++first_calls;
    ASSERT_TRUE(p.ok());
    p->Release();                         // inline release inside a hand-off...
    limiter.Acquire({}, Record(&again));  // ...and a new acquire from the callback
  });
  holder.permit.Release();
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(again.calls, 1);
  EXPECT_TRUE(again.permit.valid());
  EXPECT_EQ(limiter.in_use(), 1);
  again.permit.Release();
  EXPECT_EQ(limiter.in_use(), 0);
}

// Every path calls `granted` without the limiter's lock: a callback that calls back into the
// limiter would otherwise deadlock (absl::Mutex is not reentrant).
TEST(ConcurrencyLimiterTest, CallbacksRunWithoutTheLimiterLock) {
  ConcurrencyLimiter limiter(1, 1);
  std::vector<std::string> seen;
  auto probe = [&](std::string path) {
    return [&, path](absl::StatusOr<Permit> p) {
      seen.push_back(absl::StrCat(path, ":", limiter.in_use(), "/", limiter.queued()));
      if (p.ok()) p->Release();
    };
  };
  Permit held = *limiter.TryAcquire();
  std::stop_source stop;
  limiter.Acquire(stop.get_token(), probe("cancelled"));
  limiter.Acquire({}, probe("rejected"));  // queue of 1 is full
  stop.request_stop();
  limiter.Acquire({}, probe("handed"));
  held.Release();
  limiter.Acquire({}, probe("inline"));
  EXPECT_THAT(seen, ElementsAre("rejected:1/1", "cancelled:1/0", "handed:1/0", "inline:1/0"));
  EXPECT_EQ(limiter.in_use(), 0);
}

// A chain of hand-offs where every granted callback drops its permit at once must run as a loop:
// recursion would nest one frame set per waiter and overflow the stack for long queues.
TEST(ConcurrencyLimiterTest, InlineReleaseChainRunsWithoutRecursion) {
  constexpr int kWaiters = 100000;
  ConcurrencyLimiter limiter(1, kWaiters);
  Grant holder;
  limiter.Acquire({}, Record(&holder));
  std::vector<int> order;
  order.reserve(kWaiters);
  uintptr_t lowest = UINTPTR_MAX, highest = 0;
  for (int i = 0; i < kWaiters; ++i) {
    limiter.Acquire({}, [&, i](absl::StatusOr<Permit> p) {
      ASSERT_TRUE(p.ok());
      volatile char marker = 0;
      const auto here = reinterpret_cast<uintptr_t>(&marker);
      lowest = std::min(lowest, here);
      highest = std::max(highest, here);
      order.push_back(i);
    });  // the permit is dropped when the callback returns
  }
  holder.permit.Release();
  ASSERT_EQ(order.size(), static_cast<size_t>(kWaiters));
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  EXPECT_LT(highest - lowest, 64u * 1024) << "hand-offs nest on the stack";
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.queued(), 0);
}

// Cancellation and hand-off race on two threads. Exactly one wins; either way the callback runs
// once and the permit ends up either with the waiter or free — never lost, never duplicated.
TEST(ConcurrencyLimiterTest, CancelRacingHandOffNeverLosesAPermit) {
  constexpr int kRounds = 500;
  struct Round {
    ConcurrencyLimiter limiter{1, 1};
    std::stop_source stop;
    std::atomic<int> calls{0};
    absl::Mutex mu;
    absl::StatusOr<Permit> result ABSL_GUARDED_BY(mu) = absl::UnknownError("not called");
  };
  std::vector<std::unique_ptr<Round>> rounds;
  for (int i = 0; i < kRounds; ++i) rounds.push_back(std::make_unique<Round>());

  std::atomic<int> ready{0};      // rounds set up by the main thread
  std::atomic<int> cancelled{0};  // rounds whose stop the canceller has requested
  std::thread canceller([&] {
    for (int i = 0; i < kRounds; ++i) {
      while (ready.load(std::memory_order_acquire) <= i) std::this_thread::yield();
      rounds[i]->stop.request_stop();
      cancelled.store(i + 1, std::memory_order_release);
    }
  });
  int handed = 0;
  for (int i = 0; i < kRounds; ++i) {
    Round& r = *rounds[i];
    Permit holder = *r.limiter.TryAcquire();
    r.limiter.Acquire(r.stop.get_token(), [&r](absl::StatusOr<Permit> p) {
      r.calls.fetch_add(1);
      absl::MutexLock lock(&r.mu);
      r.result = std::move(p);
    });
    ready.store(i + 1, std::memory_order_release);
    holder.Release();
    while (cancelled.load(std::memory_order_acquire) <= i) std::this_thread::yield();

    ASSERT_EQ(r.calls.load(), 1) << "round " << i;
    absl::MutexLock lock(&r.mu);
    if (r.result.ok()) {
      ++handed;
      EXPECT_TRUE(r.result->valid());
      EXPECT_EQ(r.limiter.in_use(), 1) << "round " << i;
      r.result = absl::UnknownError("dropped");  // releases the permit
    } else {
      EXPECT_EQ(r.result.status().code(), absl::StatusCode::kCancelled) << "round " << i;
    }
    EXPECT_EQ(r.limiter.in_use(), 0) << "round " << i;
    EXPECT_EQ(r.limiter.queued(), 0) << "round " << i;
    EXPECT_TRUE(r.limiter.TryAcquire().has_value()) << "round " << i;
  }
  canceller.join();
  RecordProperty("handed_over", handed);
  RecordProperty("cancelled", kRounds - handed);
}

// 10,000 acquirers from several threads, random cancellation and random hold times.
TEST(ConcurrencyLimiterTest, StressNeverExceedsKAndLosesNoPermit) {
  constexpr int kPermits = 4;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  constexpr int kTotal = kThreads * kPerThread;
  ConcurrencyLimiter limiter(kPermits, kTotal);

  // The test's own counters are relaxed: seq_cst read-modify-writes shared by every thread would
  // order the threads for ThreadSanitizer and hide a race inside the limiter.
  std::atomic<int> holding{0};      // permits held by the test right now
  std::atomic<int> max_holding{0};  // the most ever held at once
  std::vector<std::atomic<int>> calls(kTotal);
  std::atomic<int> callbacks_run{0};
  std::atomic<int> granted{0};
  std::atomic<int> cancelled{0};
  std::atomic<bool> draining{false};
  std::vector<std::stop_source> stops(kTotal);
  absl::Mutex held_mu;
  std::vector<Permit> held ABSL_GUARDED_BY(held_mu);

  auto release_one_held = [&]() -> bool {
    Permit p;
    {
      absl::MutexLock lock(&held_mu);
      if (held.empty()) return false;
      p = std::move(held.back());
      held.pop_back();
    }
    holding.fetch_sub(1, std::memory_order_relaxed);
    p.Release();  // outside held_mu: may grant inline, and that callback may take held_mu
    return true;
  };
  auto on_permit = [&](Permit p, uint32_t dice) {
    const int now = holding.fetch_add(1, std::memory_order_relaxed) + 1;
    int seen = max_holding.load(std::memory_order_relaxed);
    while (now > seen && !max_holding.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
    if (!draining.load(std::memory_order_relaxed) && dice % 3 != 0) {
      absl::MutexLock lock(&held_mu);
      held.push_back(std::move(p));  // held until some thread releases it later
      return;
    }
    for (uint32_t i = 0; i < dice % 64; ++i) std::this_thread::yield();  // a short hold
    holding.fetch_sub(1, std::memory_order_relaxed);
    p.Release();
  };

  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      for (int i = 0; i < kPerThread; ++i) {
        const int idx = t * kPerThread + i;
        const uint32_t dice = static_cast<uint32_t>(idx) * 2654435761u >> 8;
        limiter.Acquire(stops[idx].get_token(), [&, idx, dice](absl::StatusOr<Permit> p) {
          calls[idx].fetch_add(1, std::memory_order_relaxed);
          if (p.ok()) {
            granted.fetch_add(1, std::memory_order_relaxed);
            on_permit(*std::move(p), dice);
          } else {
            EXPECT_EQ(p.status().code(), absl::StatusCode::kCancelled) << p.status();
            cancelled.fetch_add(1, std::memory_order_relaxed);
          }
          callbacks_run.fetch_add(1, std::memory_order_relaxed);
        });
        if (rng() % 4 == 0) stops[t * kPerThread + rng() % (i + 1)].request_stop();
        if (rng() % 2 == 0) release_one_held();
        if (rng() % 16 == 0) {
          if (std::optional<Permit> p = limiter.TryAcquire()) on_permit(*std::move(p), 0);
        }
      }
    });
  }
  // A canceller on its own thread races cancellations against hand-offs on the others; it also
  // hits acquirers not issued yet (cancelled inline) and ones long granted (no effect).
  std::atomic<bool> workers_done{false};
  std::thread canceller([&] {
    std::mt19937 rng(42);
    while (!workers_done.load(std::memory_order_relaxed)) {
      stops[rng() % kTotal].request_stop();
      for (int i = 0; i < 8; ++i) std::this_thread::yield();
    }
  });
  for (auto& w : workers) w.join();
  workers_done.store(true, std::memory_order_relaxed);
  canceller.join();

  draining.store(true, std::memory_order_relaxed);
  while (callbacks_run.load(std::memory_order_relaxed) < kTotal) {
    if (!release_one_held()) std::this_thread::yield();
  }
  while (release_one_held()) {
  }

  EXPECT_LE(max_holding.load(), kPermits);
  EXPECT_EQ(max_holding.load(), kPermits) << "the stress never saturated the limiter";
  EXPECT_EQ(holding.load(), 0);
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(calls[i].load(), 1) << "acquirer " << i;
  EXPECT_EQ(granted.load() + cancelled.load(), kTotal);
  EXPECT_GT(cancelled.load(), 0);
  EXPECT_GT(granted.load(), 0);
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.queued(), 0);
  std::vector<Permit> all;
  for (int i = 0; i < kPermits; ++i) {
    std::optional<Permit> p = limiter.TryAcquire();
    ASSERT_TRUE(p.has_value()) << "permit " << i << " was lost";
    all.push_back(*std::move(p));
  }
  EXPECT_FALSE(limiter.TryAcquire().has_value());
}

}  // namespace
}  // namespace flightcache
