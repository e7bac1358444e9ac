#include "flightcache/flight_cache.h"

#include <atomic>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "flightcache/clock.h"
#include "flightcache/timer_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/async_cancel_origin.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"
#include "tests/testing/get_blocking.h"

namespace flightcache {
namespace {

using testing::AsyncCancelOrigin;
using testing::FakeOrigin;
using testing::FakeTimerQueue;
using ::testing::HasSubstr;

// What one Get delivered.
// Its state is shared with the callback: a cache destroyed after the Reply (a test's locals die
// in reverse order) cancels its loads and answers their waiters, and must not write into a dead
// object.
struct Reply {
  struct State {
    std::atomic<int> calls{0};
    GetResult result;
  };
  std::shared_ptr<State> state = std::make_shared<State>();
  std::atomic<int>& calls = state->calls;
  GetResult& result = state->result;

  FlightCache::Callback Callback() {
    return [s = state](GetResult r) {
      s->result = std::move(r);
      s->calls++;
    };
  }
  std::string value() const { return std::string(result.value ? *result.value : "<null>"); }
  absl::StatusCode code() const { return result.status.code(); }
};

class FlightCacheTest : public ::testing::Test {
 protected:
  FlightCacheOptions Options() {
    FlightCacheOptions o;
    o.store.capacity_bytes = 1 << 20;
    return o;
  }
  std::unique_ptr<FlightCache> Make(FlightCacheOptions o) {
    EXPECT_TRUE(o.Validate().ok()) << o.Validate();
    return std::make_unique<FlightCache>(o, origin_, timers_);
  }
  std::unique_ptr<FlightCache> Make() { return Make(Options()); }

  FakeTimerQueue timers_;
  FakeOrigin origin_;
};

TEST_F(FlightCacheTest, MissLoadsOnceThenHits) {
  auto cache = Make();
  Reply first, second;
  cache->Get("k", first.Callback());
  ASSERT_EQ(origin_.fetches(), 1);
  EXPECT_EQ(origin_.request(0).key, "k");
  EXPECT_EQ(origin_.request(0).attempt, 1u);
  EXPECT_EQ(first.calls, 0);
  origin_.AnswerValue(0, "v");
  ASSERT_EQ(first.calls, 1);
  EXPECT_TRUE(first.result.status.ok());
  EXPECT_EQ(first.value(), "v");
  EXPECT_EQ(first.result.source, Source::kLoaded);
  EXPECT_EQ(first.result.ttl_remaining, absl::Seconds(60));

  timers_.Advance(absl::Seconds(10));
  cache->Get("k", second.Callback());
  ASSERT_EQ(second.calls, 1);  // inline: a hit
  EXPECT_EQ(second.value(), "v");
  EXPECT_EQ(second.result.source, Source::kHit);
  EXPECT_EQ(second.result.ttl_remaining, absl::Seconds(50));
  EXPECT_EQ(origin_.fetches(), 1);

  FlightCacheStats s = cache->stats();
  EXPECT_EQ(s.requests, 2);
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.loads_started, 1);
  EXPECT_EQ(s.loads_succeeded, 1);
  EXPECT_EQ(s.origin_fetches, 1);
  EXPECT_EQ(s.entries, 1);
  EXPECT_GT(s.bytes, 0);
  EXPECT_EQ(s.loads_inflight, 0);
}

TEST_F(FlightCacheTest, ReadHitShowsCachedEntriesAndCountsThemAsHits) {
  FlightCacheOptions o = Options();
  o.negative_ttl = absl::Seconds(5);
  auto cache = Make(o);
  int reads = 0;
  auto never = [&reads](const CacheEntryView&) { ++reads; };
  EXPECT_FALSE(cache->ReadHit("k", never));  // a miss counts nothing: the caller calls Get()
  EXPECT_FALSE(cache->ReadHit("", never));   // bad keys are Get()'s to reject
  EXPECT_FALSE(cache->ReadHit(std::string(o.max_key_bytes + 1, 'x'), never));
  EXPECT_EQ(reads, 0);
  EXPECT_EQ(cache->stats().requests, 0);

  Reply loaded, absent;
  cache->Get("k", loaded.Callback());
  cache->Get("gone", absent.Callback());
  origin_.AnswerValue(0, "v");
  origin_.Answer(1, absl::NotFoundError("no such key"));
  timers_.Advance(absl::Seconds(1));

  std::string copied;
  absl::Duration ttl;
  EXPECT_TRUE(cache->ReadHit("k", [&](const CacheEntryView& entry) {
    EXPECT_FALSE(entry.negative);
    copied = std::string(entry.value);
    ttl = entry.ttl_remaining;
  }));
  EXPECT_EQ(copied, "v");
  EXPECT_EQ(ttl, absl::Seconds(59));
  bool negative = false;
  EXPECT_TRUE(cache->ReadHit("gone", [&](const CacheEntryView& e) { negative = e.negative; }));
  EXPECT_TRUE(negative);

  const FlightCacheStats s = cache->stats();
  EXPECT_EQ(s.requests, 4);  // 2 Gets + 2 ReadHits
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.negative_hits, 1);
  EXPECT_EQ(s.misses, 2);
  EXPECT_EQ(origin_.fetches(), 2);
}

// Hits through Get() count as accesses for the eviction policy: a key read again keeps its place
// while a stream of one-hit keys passes through the cache (S3-FIFO promotes it out of the small
// queue; an unread key is evicted from there).
TEST_F(FlightCacheTest, KeysReadThroughGetSurviveAScanOfOneHitKeys) {
  FlightCacheOptions o = Options();
  o.store.capacity_bytes = 64 * 1024;  // ~400 entries of this size in total
  o.store.shard_count = 1;
  auto cache = Make(o);
  origin_.set_auto_answer(
      [](const FetchRequest&) { return FetchResult{.value = std::string(50, 'v')}; });
  Reply hot;
  cache->Get("hot", hot.Callback());
  ASSERT_EQ(hot.result.source, Source::kLoaded);
  Reply hit;
  cache->Get("hot", hit.Callback());
  ASSERT_EQ(hit.result.source, Source::kHit);
  for (int i = 0; i < 2000; ++i) {
    Reply cold;
    cache->Get("cold-" + std::to_string(i), cold.Callback());
  }
  Reply again;
  cache->Get("hot", again.Callback());
  EXPECT_EQ(again.result.source, Source::kHit) << "the key read again was evicted by the scan";
}

TEST_F(FlightCacheTest, ConcurrentMissesShareOneFetch) {
  auto cache = Make();
  constexpr int kCallers = 100;
  std::vector<Reply> replies(kCallers);
  for (auto& r : replies) cache->Get("hot", r.Callback());
  EXPECT_EQ(origin_.fetches(), 1);
  origin_.AnswerValue(0, "v");
  int loaded = 0, coalesced = 0;
  for (auto& r : replies) {
    ASSERT_EQ(r.calls, 1);
    EXPECT_EQ(r.value(), "v");
    loaded += r.result.source == Source::kLoaded;
    coalesced += r.result.source == Source::kCoalesced;
  }
  EXPECT_EQ(loaded, 1);
  EXPECT_EQ(coalesced, kCallers - 1);
  EXPECT_EQ(cache->stats().coalesced, kCallers - 1);
}

TEST_F(FlightCacheTest, CallerLeavingEarlyDoesNotCancelTheSharedLoad) {
  auto cache = Make();
  Reply impatient, patient;
  GetHandle h1 = cache->Get("k", impatient.Callback());
  GetHandle h2 = cache->Get("k", patient.Callback());
  h1.Cancel();  // its deadline passed
  EXPECT_EQ(impatient.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(origin_.cancelled(0));
  origin_.AnswerValue(0, "v");
  EXPECT_EQ(patient.value(), "v");
  EXPECT_EQ(origin_.cancellations(), 0);
}

TEST_F(FlightCacheTest, LastWaiterLeavingCancelsTheOriginFetch) {
  auto cache = Make();
  Reply a, b;
  GetHandle ha = cache->Get("k", a.Callback());
  GetHandle hb = cache->Get("k", b.Callback());
  ha.Cancel();
  hb.Cancel();
  EXPECT_TRUE(origin_.cancelled(0));
  EXPECT_EQ(origin_.cancellations(), 1);
  FlightCacheStats s = cache->stats();
  EXPECT_EQ(s.loads_cancelled, 1);
  EXPECT_EQ(s.loads_inflight, 0);
  EXPECT_EQ(s.entries, 0);
  // A later Get fetches again.
  Reply c;
  cache->Get("k", c.Callback());
  EXPECT_EQ(origin_.fetches(), 2);
}

TEST_F(FlightCacheTest, FinishPolicyLetsAnAbandonedLoadFillTheCache) {
  FlightCacheOptions o = Options();
  o.abandoned_loads = AbandonPolicy::kFinish;
  auto cache = Make(o);
  Reply a;
  cache->Get("k", a.Callback()).Cancel();
  EXPECT_FALSE(origin_.cancelled(0));
  origin_.AnswerValue(0, "v");
  Reply b;
  cache->Get("k", b.Callback());
  EXPECT_EQ(b.result.source, Source::kHit);
  EXPECT_EQ(b.value(), "v");
}

TEST_F(FlightCacheTest, NotFoundIsCachedForTheNegativeTtl) {
  FlightCacheOptions o = Options();
  o.negative_ttl = absl::Seconds(5);
  auto cache = Make(o);
  Reply a, b, c;
  cache->Get("missing", a.Callback());
  origin_.Answer(0, absl::NotFoundError("no such key"));
  EXPECT_EQ(a.code(), absl::StatusCode::kNotFound);
  cache->Get("missing", b.Callback());
  EXPECT_EQ(b.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b.result.source, Source::kHit);
  EXPECT_EQ(origin_.fetches(), 1);
  EXPECT_EQ(cache->stats().negative_hits, 1);
  timers_.Advance(absl::Seconds(5));
  cache->Get("missing", c.Callback());
  EXPECT_EQ(origin_.fetches(), 2);
}

TEST_F(FlightCacheTest, FailedLoadIsSharedByEveryWaiterAndNotCached) {
  auto cache = Make();
  std::vector<Reply> replies(10);
  for (auto& r : replies) cache->Get("k", r.Callback());
  origin_.Answer(0, absl::UnavailableError("backend on fire"));
  for (auto& r : replies) {
    ASSERT_EQ(r.calls, 1);
    EXPECT_EQ(r.code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(std::string(r.result.status.message()).find("backend on fire"), std::string::npos)
        << r.result.status;
  }
  EXPECT_EQ(origin_.fetches(), 1);
  EXPECT_EQ(cache->stats().loads_failed, 1);
  Reply again;
  cache->Get("k", again.Callback());
  EXPECT_EQ(origin_.fetches(), 2);  // not cached
}

TEST_F(FlightCacheTest, OriginErrorCodesMapAsTheSpecSays) {
  auto cache = Make();
  const std::vector<std::pair<absl::Status, absl::StatusCode>> cases = {
      {absl::PermissionDeniedError("nope"), absl::StatusCode::kUnavailable},
      {absl::DeadlineExceededError("slow"), absl::StatusCode::kUnavailable},
      {absl::ResourceExhaustedError("value too large"), absl::StatusCode::kResourceExhausted},
      {absl::InternalError("garbage"), absl::StatusCode::kInternal},
      {absl::NotFoundError("gone"), absl::StatusCode::kNotFound},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Reply r;
    cache->Get("k" + std::to_string(i), r.Callback());
    origin_.Answer(i, cases[i].first);
    EXPECT_EQ(r.code(), cases[i].second) << cases[i].first;
    EXPECT_NE(std::string(r.result.status.message()).find(std::string(cases[i].first.message())),
              std::string::npos)
        << r.result.status;
  }
}

TEST_F(FlightCacheTest, OriginTtlOverridesTheDefault) {
  auto cache = Make();
  Reply a, b, c;
  cache->Get("k", a.Callback());
  origin_.AnswerValue(0, "v", absl::Seconds(2));
  EXPECT_EQ(a.result.ttl_remaining, absl::Seconds(2));
  timers_.Advance(absl::Milliseconds(1999));
  cache->Get("k", b.Callback());
  EXPECT_EQ(b.result.source, Source::kHit);
  timers_.Advance(absl::Milliseconds(1));
  cache->Get("k", c.Callback());
  EXPECT_EQ(origin_.fetches(), 2);
}

TEST_F(FlightCacheTest, BadKeysAreInvalidArgumentAndNeverFetched) {
  FlightCacheOptions o = Options();
  o.max_key_bytes = 16;
  auto cache = Make(o);
  Reply empty, huge, ok;
  cache->Get("", empty.Callback());
  cache->Get(std::string(17, 'k'), huge.Callback());
  cache->Get(std::string(16, 'k'), ok.Callback());
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(huge.result.status.message()).find("max_key_bytes"), std::string::npos);
  EXPECT_EQ(origin_.fetches(), 1);
}

TEST_F(FlightCacheTest, OversizedValueIsResourceExhaustedAndNotCached) {
  FlightCacheOptions o = Options();
  o.max_value_bytes = 100;
  auto cache = Make(o);
  Reply a, b;
  cache->Get("k", a.Callback());
  origin_.AnswerValue(0, std::string(101, 'x'));
  EXPECT_EQ(a.code(), absl::StatusCode::kResourceExhausted);
  cache->Get("k", b.Callback());
  EXPECT_EQ(origin_.fetches(), 2);
}

TEST_F(FlightCacheTest, LoadsBeyondTheLimitQueueAndOverflowIsResourceExhausted) {
  FlightCacheOptions o = Options();
  o.max_concurrent_loads = 2;
  o.max_queued_loads = 2;
  auto cache = Make(o);
  std::vector<Reply> replies(5);
  for (int i = 0; i < 5; ++i) cache->Get("k" + std::to_string(i), replies[i].Callback());
  EXPECT_EQ(origin_.fetches(), 2);  // two in flight, two queued
  EXPECT_EQ(cache->stats().loads_queued, 2);
  EXPECT_EQ(replies[4].code(), absl::StatusCode::kResourceExhausted);  // at once
  origin_.AnswerValue(0, "v0");
  EXPECT_EQ(origin_.fetches(), 3);          // the first queued load got the permit
  EXPECT_EQ(origin_.request(2).key, "k2");  // FIFO
  origin_.AnswerValue(1, "v1");
  origin_.AnswerValue(2, "v2");
  origin_.AnswerValue(3, "v3");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(replies[i].value(), "v" + std::to_string(i));
  EXPECT_EQ(cache->stats().loads_queued, 0);
  EXPECT_EQ(cache->stats().loads_inflight, 0);
}

TEST_F(FlightCacheTest, AnOldQueueHandsThePermitToTheNewestLoadAndCountsIt) {
  FlightCacheOptions o = Options();
  o.max_concurrent_loads = 1;
  o.load_timeout = absl::Seconds(10);
  o.load_queue_lifo_after = absl::Milliseconds(100);
  auto cache = Make(o);
  std::vector<Reply> replies(4);
  for (int i = 0; i < 3; ++i) cache->Get("k" + std::to_string(i), replies[i].Callback());
  ASSERT_EQ(origin_.fetches(), 1);
  origin_.AnswerValue(0, "v0");  // the queue is young: FIFO
  ASSERT_EQ(origin_.fetches(), 2);
  EXPECT_EQ(origin_.request(1).key, "k1");
  EXPECT_EQ(cache->stats().load_queue_lifo_handoffs, 0);
  cache->Get("k3", replies[3].Callback());
  timers_.Advance(absl::Milliseconds(150));  // k2 has waited longer than lifo_after
  origin_.AnswerValue(1, "v1");
  ASSERT_EQ(origin_.fetches(), 3);
  EXPECT_EQ(origin_.request(2).key, "k3");  // the newest
  EXPECT_EQ(cache->stats().load_queue_lifo_handoffs, 1);
  origin_.AnswerValue(2, "v3");
  origin_.AnswerValue(3, "v2");
  EXPECT_EQ(replies[2].value(), "v2");
  EXPECT_EQ(replies[3].value(), "v3");
}

TEST_F(FlightCacheTest, QueuedLoadLeavesTheQueueWhenItsLastWaiterLeaves) {
  FlightCacheOptions o = Options();
  o.max_concurrent_loads = 1;
  auto cache = Make(o);
  Reply a, b;
  cache->Get("a", a.Callback());
  GetHandle hb = cache->Get("b", b.Callback());
  EXPECT_EQ(cache->stats().loads_queued, 1);
  hb.Cancel();
  EXPECT_EQ(cache->stats().loads_queued, 0);
  EXPECT_EQ(cache->stats().loads_cancelled, 1);
  origin_.AnswerValue(0, "va");
  EXPECT_EQ(origin_.fetches(), 1);  // "b" never reached the origin
}

TEST_F(FlightCacheTest, LoadTimeoutIsUnavailableAndCancelsTheFetch) {
  FlightCacheOptions o = Options();
  o.load_timeout = absl::Seconds(2);
  auto cache = Make(o);
  Reply a;
  cache->Get("k", a.Callback());
  timers_.Advance(absl::Seconds(2));
  EXPECT_EQ(a.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(origin_.cancelled(0));
  EXPECT_EQ(cache->stats().loads_failed, 1);
}

// Answers `n` loads of distinct keys, each after `latency`: the cache learns a typical fetch time.
void WarmUp(FlightCache& cache, FakeOrigin& origin, FakeTimerQueue& timers, int n,
            absl::Duration latency) {
  for (int i = 0; i < n; ++i) {
    const size_t fetch = static_cast<size_t>(origin.fetches());
    cache.Get("warm-" + std::to_string(i), [](GetResult) {});
    timers.Advance(latency);
    ASSERT_TRUE(origin.AnswerValue(fetch, "w"));
  }
}

TEST_F(FlightCacheTest, QueuedLoadThatCannotFinishInTimeFailsWithoutFetching) {
  FlightCacheOptions o = Options();
  o.max_concurrent_loads = 1;
  o.load_timeout = absl::Seconds(1);
  auto cache = Make(o);
  WarmUp(*cache, origin_, timers_, 10, absl::Milliseconds(400));
  const int64_t warm_fetches = origin_.fetches();
  Reply a, b, c, d;
  cache->Get("a", a.Callback());
  cache->Get("b", b.Callback());  // queued behind "a"
  timers_.Advance(absl::Milliseconds(700));
  origin_.AnswerValue(warm_fetches, "va");  // "b" gets the permit with 300 ms left of its 1 s
  EXPECT_EQ(a.value(), "va");
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(b.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b.result.status.message().find("fake://"), absl::string_view::npos) << b.result.status;
  EXPECT_EQ(origin_.fetches(), warm_fetches + 1) << "a fetch that could not finish was started";
  EXPECT_EQ(cache->stats().loads_too_late_to_fetch, 1);
  EXPECT_EQ(cache->stats().loads_queued, 0);

  // With 500 ms left of its timeout, a queued load still fetches.
  cache->Get("c", c.Callback());
  cache->Get("d", d.Callback());
  timers_.Advance(absl::Milliseconds(500));
  origin_.AnswerValue(warm_fetches + 1, "vc");
  EXPECT_EQ(origin_.fetches(), warm_fetches + 3);
  origin_.AnswerValue(warm_fetches + 2, "vd");
  EXPECT_EQ(d.value(), "vd");
  EXPECT_EQ(cache->stats().loads_too_late_to_fetch, 1);
}

TEST_F(FlightCacheTest, FetchesCutOffByTheLoadTimeoutAreCounted) {
  FlightCacheOptions o = Options();
  o.load_timeout = absl::Seconds(2);
  auto cache = Make(o);
  Reply abandoned, timed_out;
  GetHandle h = cache->Get("abandoned", abandoned.Callback());
  h.Cancel();  // the origin's work is cancelled, but not by the timeout
  EXPECT_TRUE(origin_.cancelled(0));
  EXPECT_EQ(cache->stats().fetches_cut_by_load_timeout, 0);
  cache->Get("slow", timed_out.Callback());
  timers_.Advance(absl::Seconds(2));
  EXPECT_EQ(timed_out.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(origin_.cancelled(1));
  EXPECT_EQ(cache->stats().fetches_cut_by_load_timeout, 1);
}

// The origin client holds the load's deadline on its own clock (gRPC: wall-clock time) and may
// report DEADLINE_EXCEEDED a moment before our timer fires. Callers see the same load-timeout
// error either way, and the fetch counts as cut by the timeout; a DEADLINE_EXCEEDED well before
// the deadline is the origin's own error.
TEST_F(FlightCacheTest, AnOriginDeadlineAtTheLoadTimeoutIsTheLoadTimeout) {
  FlightCacheOptions o = Options();
  o.load_timeout = absl::Seconds(2);
  auto cache = Make(o);
  Reply at_timeout, early;
  cache->Get("at-timeout", at_timeout.Callback());
  cache->Get("early", early.Callback());
  timers_.Advance(absl::Milliseconds(500));
  ASSERT_TRUE(origin_.Answer(1, absl::DeadlineExceededError("its backend timed out")));
  timers_.Advance(absl::Milliseconds(1499));
  ASSERT_TRUE(origin_.Answer(0, absl::DeadlineExceededError("Deadline Exceeded")));
  EXPECT_EQ(at_timeout.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(at_timeout.result.status.message()).find("load_timeout=2s"),
            std::string::npos)
      << at_timeout.result.status;
  EXPECT_EQ(early.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(early.result.status.message()).find("its backend timed out"),
            std::string::npos)
      << early.result.status;
  EXPECT_EQ(cache->stats().fetches_cut_by_load_timeout, 1);
}

TEST_F(FlightCacheTest, InvalidateDuringALoadKeepsTheNewerValue) {
  auto cache = Make();
  Reply old_waiter, new_waiter, after;
  cache->Get("k", old_waiter.Callback());
  EXPECT_EQ(cache->Invalidate({"k"}), 0);  // nothing cached yet; the load is detached
  cache->Get("k", new_waiter.Callback());
  ASSERT_EQ(origin_.fetches(), 2);  // a new fetch, not the old one joined
  origin_.AnswerValue(1, "new");
  origin_.AnswerValue(0, "old");  // the slow old load answers last
  EXPECT_EQ(old_waiter.value(), "old");
  EXPECT_EQ(new_waiter.value(), "new");
  cache->Get("k", after.Callback());
  EXPECT_EQ(after.result.source, Source::kHit);
  EXPECT_EQ(after.value(), "new");
}

TEST_F(FlightCacheTest, InvalidateRemovesCachedEntries) {
  auto cache = Make();
  Reply a, b;
  cache->Get("k", a.Callback());
  origin_.AnswerValue(0, "v");
  EXPECT_EQ(cache->Invalidate({"k", "absent"}), 1);
  cache->Get("k", b.Callback());
  EXPECT_EQ(origin_.fetches(), 2);
}

TEST_F(FlightCacheTest, OriginThatThrowsGivesInternal) {
  class ThrowingOrigin final : public Origin {
   public:
    void Fetch(const FetchRequest&, std::stop_token, FetchCallback) override {
      throw std::runtime_error("bug in origin adapter");
    }
    std::string Describe() const override { return "throwing://"; }
  } throwing;
  FlightCache cache(Options(), throwing, timers_);
  Reply a, b;
  cache.Get("k", a.Callback());
  EXPECT_EQ(a.code(), absl::StatusCode::kInternal);
  cache.Get("k", b.Callback());
  EXPECT_EQ(b.code(), absl::StatusCode::kInternal);  // not cached, and the process lives on
}

TEST_F(FlightCacheTest, SlowPrimaryIsHedgedAndTheHedgeWins) {
  FlightCacheOptions o = Options();
  o.hedge.enabled = true;
  o.hedge.delay = absl::Milliseconds(20);
  auto cache = Make(o);
  Reply a;
  cache->Get("k", a.Callback());
  timers_.Advance(absl::Milliseconds(19));
  EXPECT_EQ(origin_.fetches(), 1);
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_EQ(origin_.fetches(), 2);
  EXPECT_EQ(origin_.request(1).attempt, 2u);
  origin_.AnswerValue(1, "from hedge");
  EXPECT_EQ(a.value(), "from hedge");
  EXPECT_TRUE(origin_.cancelled(0));  // the loser
  FlightCacheStats s = cache->stats();
  EXPECT_EQ(s.hedges_sent, 1);
  EXPECT_EQ(s.hedges_won, 1);
  EXPECT_EQ(s.origin_fetches, 2);
}

TEST_F(FlightCacheTest, GetBlockingHonoursTheCallersDeadline) {
  auto cache = Make();
  GetResult r = testing::GetBlocking(*cache, "k", CallContext::WithTimeout(absl::Milliseconds(30)));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(origin_.cancelled(0));  // it was the only waiter
}

// The core names its own options in its errors, never a command-line flag: the server maps them.
TEST_F(FlightCacheTest, ValidateNamesTheOptionAtFault) {
  auto error = [this](auto mutate) {
    FlightCacheOptions o = Options();
    mutate(o);
    return std::string(o.Validate().message());
  };
  EXPECT_TRUE(Options().Validate().ok());
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.load_timeout = absl::ZeroDuration(); }),
            "load_timeout: must be a positive, finite duration, got 0");
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.default_ttl = absl::Hours(9000); }),
            "default_ttl: must be at most 8760h, got 9000h");
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.negative_ttl = -absl::Seconds(1); }),
            "negative_ttl: must be a finite duration >= 0, got -1s");
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.max_value_bytes = 0; }),
            "max_value_bytes: must be in [1, 2147483647], got 0");
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.store.capacity_bytes = 0; }),
            "store.capacity_bytes: must be in [1, 1099511627776], got 0");
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.hedge.budget = 2; }),
            "hedge.budget: must be a fraction in [0, 1], got 2");
  EXPECT_EQ(error([](FlightCacheOptions& o) { o.hedge.percentile = 100; }),
            "hedge.percentile: must be in (0, 100), or 0 for the fixed delay, got 100");
}

TEST_F(FlightCacheTest, DestroyingTheCacheCancelsLoadsInFlight) {
  Reply a;
  {
    auto cache = Make();
    cache->Get("k", a.Callback());
  }
  EXPECT_EQ(a.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(origin_.cancelled(0));
}

// ---------------------------------------------------------------------------------------------
// Permits, shutdown and status mapping under origins that answer late, on threads the test drives.

FlightCacheOptions SmallOptions() {
  FlightCacheOptions o;
  o.store.capacity_bytes = 1 << 20;
  return o;
}

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

// An invalidated (detached) load is out of the group's table, but ~FlightCache must still cancel
// it: otherwise it waits for a fetch that nobody cancelled, until the origin answers.
TEST(FlightCacheShutdownTest, DestroyingTheCacheCancelsInvalidatedLoads) {
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
  EXPECT_EQ(reply.code(), absl::StatusCode::kCancelled);
}

// The primary fetch's concurrency permit is released when its origin call has ended, not when the
// load was cancelled: an origin that acknowledges a cancellation asynchronously (every RPC client
// does) still has the cancelled call in flight, and handing its permit to the next queued load
// would let the origin see K+1 concurrent fetches (docs/PROTOCOL.md, load semantics: at most
// --max-concurrent-loads origin fetches in flight).
TEST(FlightCachePermitTest, PrimaryPermitIsHeldUntilItsOriginCallHasEnded) {
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

// The same when a hedge wins: the cancelled primary keeps its permit until its call has ended.
TEST(FlightCachePermitTest, BeatenPrimaryKeepsItsPermitUntilItsCallHasEnded) {
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

// A hedge timer that fired just before shutdown has decided to send the hedge (permit taken, token
// spent) but not yet started its origin call; ~FlightCache must wait for it, or the hedge runs on
// freed memory. The test holds the timer thread at the first instruction of the hedge's origin
// call (its clock read) and checks that the destructor waits for it.
TEST(FlightCacheShutdownTest, DestructionWaitsForAHedgeThatIsBeingSent) {
  // Heap-allocated and deliberately leaked if the bug shows: the held thread still refers to them.
  auto* clock = new GateClock();
  auto* timers = new FakeTimerQueue(*clock);
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
  EXPECT_EQ(reply->code(), absl::StatusCode::kCancelled);
  delete timers;  // drops the load-timeout timer's closure
  delete origin;
  delete clock;
}

// An origin that answers CANCELLED on its own (its server shut down, a proxy reset the stream),
// not because flightcache cancelled it, is a failed origin: UNAVAILABLE naming the origin's error
// (docs/PROTOCOL.md's status table has CANCELLED for no such case), counted as a failed load.
TEST(FlightCacheStatusTest, OriginCancelledForAWaiterThatStayedIsUnavailable) {
  FakeTimerQueue timers;
  FakeOrigin origin;
  FlightCache cache(SmallOptions(), origin, timers);
  Reply reply;
  cache.Get("k", reply.Callback());
  origin.Answer(0, absl::CancelledError("upstream reset the stream"));
  ASSERT_EQ(reply.calls, 1);
  EXPECT_EQ(reply.code(), absl::StatusCode::kUnavailable) << reply.result.status;
  EXPECT_THAT(std::string(reply.result.status.message()), HasSubstr("fake://"));
  EXPECT_EQ(cache.stats().loads_failed, 1);
  EXPECT_EQ(cache.stats().loads_cancelled, 0);
}

// A load that *we* cancel (its last waiter left, or shutdown) counts as cancelled, not failed,
// whatever the origin answers afterwards.
TEST(FlightCacheStatusTest, AbandonedLoadStillCountsAsCancelled) {
  FakeTimerQueue timers;
  AsyncCancelOrigin origin;
  FlightCache cache(SmallOptions(), origin, timers);
  Reply reply;
  GetHandle handle = cache.Get("k", reply.Callback());
  handle.Cancel();
  EXPECT_EQ(reply.code(), absl::StatusCode::kCancelled);
  origin.Answer(0, absl::CancelledError("cancelled"));
  EXPECT_EQ(cache.stats().loads_cancelled, 1);
  EXPECT_EQ(cache.stats().loads_failed, 0);
  EXPECT_EQ(cache.stats().loads_inflight, 0);
}

// ---------------------------------------------------------------------------------------------
// Stress

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

// Meant for the TSan run too. Gets (some cancelled at once), Invalidates and origin answers race;
// hedging and a short load timeout are on, and the cache is destroyed while loads are still in
// flight. Checks that every `done` runs exactly once and that a Get issued after Invalidate(key)
// returned never gets a value from a fetch that started before that Invalidate began.
TEST(FlightCacheStressTest, GetInvalidateCancelAndCompleteRace) {
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

}  // namespace
}  // namespace flightcache
