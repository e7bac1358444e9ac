// Serving stale and refreshing ahead (FlightCache's stale_while_revalidate, stale_if_error,
// refresh_ahead), on a fake clock with an origin answered by hand.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "flightcache/cache_entry.h"
#include "flightcache/flight_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"
#include "tests/testing/get_reply.h"

namespace flightcache {
namespace {

using testing::FakeOrigin;
using testing::FakeTimerQueue;
using Reply = testing::GetReply;
using ::testing::HasSubstr;

constexpr absl::Duration kTtl = absl::Seconds(1);

class FlightCacheStaleTest : public ::testing::Test {
 protected:
  static FlightCacheOptions Options() {
    FlightCacheOptions o;
    o.store.capacity_bytes = 1 << 20;
    return o;
  }
  std::unique_ptr<FlightCache> Make(const FlightCacheOptions& o) {
    EXPECT_TRUE(o.Validate().ok()) << o.Validate();
    return std::make_unique<FlightCache>(o, origin_, timers_);
  }

  // Loads `key` as fetch number `fetch` and answers it with `value` for kTtl.
  void Load(FlightCache& cache, const std::string& key, int fetch, const std::string& value) {
    Reply loaded;
    cache.Get(key, loaded.Callback());
    ASSERT_EQ(origin_.fetches(), fetch + 1);
    ASSERT_TRUE(origin_.AnswerValue(fetch, value, kTtl));
    ASSERT_EQ(loaded.calls(), 1);
    ASSERT_EQ(loaded.value(), value);
  }

  // A cache whose key "k" was loaded as "v1" (fetch 0) and is now `past_ttl` past its TTL.
  std::unique_ptr<FlightCache> MakeWithExpiredKey(const FlightCacheOptions& o,
                                                  absl::Duration past_ttl) {
    auto cache = Make(o);
    Load(*cache, "k", 0, "v1");
    timers_.Advance(kTtl + past_ttl);
    return cache;
  }

  FakeTimerQueue timers_;
  FakeOrigin origin_;
};

TEST_F(FlightCacheStaleTest, OptionsAreChecked) {
  FlightCacheOptions o = Options();
  o.refresh_ahead = 1;
  EXPECT_THAT(o.Validate().message(), HasSubstr("refresh_ahead"));
  o.refresh_ahead = -0.5;
  EXPECT_FALSE(o.Validate().ok());
  o = Options();
  o.stale_while_revalidate = -absl::Seconds(1);
  EXPECT_THAT(o.Validate().message(), HasSubstr("stale_while_revalidate"));
  o = Options();
  o.stale_if_error = absl::Hours(9000);
  EXPECT_THAT(o.Validate().message(), HasSubstr("stale_if_error"));
  o = Options();
  o.stale_while_revalidate = absl::Seconds(10);
  o.stale_if_error = absl::Hours(1);
  o.refresh_ahead = 0.8;
  EXPECT_TRUE(o.Validate().ok()) << o.Validate();
}

// --- stale-while-revalidate

TEST_F(FlightCacheStaleTest, StaleWhileRevalidateAnswersAtOnceWhileExactlyOneRefreshRuns) {
  FlightCacheOptions o = Options();
  o.stale_while_revalidate = absl::Seconds(10);
  auto cache = MakeWithExpiredKey(o, absl::Milliseconds(500));

  std::vector<Reply> replies(3);
  for (Reply& r : replies) cache->Get("k", r.Callback());
  for (const Reply& r : replies) {
    ASSERT_EQ(r.calls(), 1) << "a stale value is served at once, not after the refresh";
    EXPECT_EQ(r.value(), "v1");
    EXPECT_EQ(r.source(), Source::kStale);
    EXPECT_EQ(r.result().stale_for, absl::Milliseconds(500));
    EXPECT_EQ(r.result().ttl_remaining, absl::ZeroDuration());
  }
  EXPECT_EQ(origin_.fetches(), 2) << "one refresh for three stale reads";
  FlightCacheStats s = cache->stats();
  EXPECT_EQ(s.stale_served, 3);
  EXPECT_EQ(s.refreshes_started, 1);
  EXPECT_EQ(s.loads_inflight, 1);
  // Every request is a hit, a negative hit or a miss: a stale answer is a miss of the fresh cache.
  EXPECT_EQ(s.requests, 4);
  EXPECT_EQ(s.misses, 4);
  EXPECT_EQ(s.hits, 0);

  // Nobody waits for the refresh, and nobody's absence cancels it: it stores its value.
  EXPECT_FALSE(origin_.cancelled(1));
  ASSERT_TRUE(origin_.AnswerValue(1, "v2", kTtl));
  Reply fresh;
  cache->Get("k", fresh.Callback());
  ASSERT_EQ(fresh.calls(), 1);
  EXPECT_EQ(fresh.value(), "v2");
  EXPECT_EQ(fresh.source(), Source::kHit);
  s = cache->stats();
  EXPECT_EQ(s.loads_succeeded, 2);
  EXPECT_EQ(s.stale_served, 3);
}

TEST_F(FlightCacheStaleTest, PastTheStaleWindowAGetWaitsForTheLoad) {
  FlightCacheOptions o = Options();
  o.stale_while_revalidate = absl::Seconds(10);
  auto cache = MakeWithExpiredKey(o, absl::Seconds(10));

  Reply waiting;
  cache->Get("k", waiting.Callback());
  EXPECT_EQ(waiting.calls(), 0);
  ASSERT_EQ(origin_.fetches(), 2);
  ASSERT_TRUE(origin_.AnswerValue(1, "v2", kTtl));
  ASSERT_EQ(waiting.calls(), 1);
  EXPECT_EQ(waiting.value(), "v2");
  EXPECT_EQ(waiting.source(), Source::kLoaded);
  EXPECT_EQ(cache->stats().stale_served, 0);
}

TEST_F(FlightCacheStaleTest, AFailedRefreshLeavesTheStaleValueAndTheNextReadTriesAgain) {
  FlightCacheOptions o = Options();
  o.stale_while_revalidate = absl::Seconds(10);
  auto cache = MakeWithExpiredKey(o, absl::Seconds(1));

  Reply first;
  cache->Get("k", first.Callback());
  ASSERT_EQ(origin_.fetches(), 2);
  ASSERT_TRUE(origin_.Answer(1, absl::UnavailableError("origin down")));
  Reply second;
  cache->Get("k", second.Callback());
  ASSERT_EQ(second.calls(), 1);
  EXPECT_EQ(second.value(), "v1");
  EXPECT_EQ(second.source(), Source::kStale);
  EXPECT_EQ(origin_.fetches(), 3);
  EXPECT_EQ(cache->stats().refreshes_started, 2);
}

TEST_F(FlightCacheStaleTest, NothingStaleIsServedAfterInvalidate) {
  FlightCacheOptions o = Options();
  o.stale_while_revalidate = absl::Seconds(10);
  o.stale_if_error = absl::Seconds(10);
  auto cache = MakeWithExpiredKey(o, absl::Seconds(1));
  Reply stale;
  cache->Get("k", stale.Callback());  // starts refresh fetch 1
  ASSERT_EQ(stale.source(), Source::kStale);
  ASSERT_EQ(origin_.fetches(), 2);

  EXPECT_EQ(cache->Invalidate({"k"}), 1);
  Reply after;
  cache->Get("k", after.Callback());
  EXPECT_EQ(after.calls(), 0) << "the stale value went with the invalidation";
  ASSERT_EQ(origin_.fetches(), 3) << "a new load: the refresh was detached";
  // The detached refresh's answer is stored nowhere; the new load fails and finds nothing stale.
  ASSERT_TRUE(origin_.AnswerValue(1, "old", kTtl));
  ASSERT_TRUE(origin_.Answer(2, absl::UnavailableError("origin down")));
  ASSERT_EQ(after.calls(), 1);
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable);
}

// --- stale-if-error

TEST_F(FlightCacheStaleTest, StaleIfErrorAnswersEveryWaiterOfAFailedLoadWithTheOldValue) {
  FlightCacheOptions o = Options();
  o.stale_if_error = absl::Seconds(10);
  auto cache = MakeWithExpiredKey(o, absl::Seconds(2));

  Reply first, joined;
  cache->Get("k", first.Callback());
  cache->Get("k", joined.Callback());
  EXPECT_EQ(first.calls(), 0) << "stale-if-error tries the load first";
  ASSERT_EQ(origin_.fetches(), 2);
  ASSERT_TRUE(origin_.Answer(1, absl::UnavailableError("origin down")));
  for (const Reply* r : {&first, &joined}) {
    ASSERT_EQ(r->calls(), 1);
    EXPECT_TRUE(r->result().status.ok()) << r->result().status;
    EXPECT_EQ(r->value(), "v1");
    EXPECT_EQ(r->source(), Source::kStale);
    EXPECT_EQ(r->result().stale_for, absl::Seconds(2));
  }
  EXPECT_EQ(cache->stats().stale_served, 2);
  EXPECT_EQ(cache->stats().loads_failed, 1);
}

TEST_F(FlightCacheStaleTest, StaleIfErrorCoversTheLoadTimeout) {
  FlightCacheOptions o = Options();
  o.stale_if_error = absl::Seconds(10);
  o.load_timeout = absl::Seconds(1);
  auto cache = MakeWithExpiredKey(o, absl::Seconds(1));

  Reply r;
  cache->Get("k", r.Callback());
  timers_.Advance(o.load_timeout);
  ASSERT_EQ(r.calls(), 1);
  EXPECT_EQ(r.value(), "v1");
  EXPECT_EQ(r.source(), Source::kStale);
  EXPECT_EQ(r.result().stale_for, absl::Seconds(2));
}

TEST_F(FlightCacheStaleTest, StaleIfErrorCoversAFullLoadQueue) {
  FlightCacheOptions o = Options();
  o.stale_if_error = absl::Seconds(10);
  o.max_concurrent_loads = 1;
  o.max_queued_loads = 0;
  auto cache = MakeWithExpiredKey(o, absl::Seconds(1));
  Reply busy;
  cache->Get("busy", busy.Callback());  // holds the one permit
  ASSERT_EQ(origin_.fetches(), 2);

  Reply r;
  cache->Get("k", r.Callback());
  ASSERT_EQ(r.calls(), 1);
  EXPECT_EQ(r.value(), "v1");
  EXPECT_EQ(r.source(), Source::kStale);
  EXPECT_EQ(origin_.fetches(), 2);
}

TEST_F(FlightCacheStaleTest, WithoutStaleIfErrorTheFailureReachesTheCaller) {
  auto cache = Make(Options());
  Load(*cache, "k", 0, "v1");
  timers_.Advance(kTtl + absl::Seconds(1));
  Reply r;
  cache->Get("k", r.Callback());
  ASSERT_TRUE(origin_.Answer(1, absl::UnavailableError("origin down")));
  ASSERT_EQ(r.calls(), 1);
  EXPECT_EQ(r.code(), absl::StatusCode::kUnavailable);
}

TEST_F(FlightCacheStaleTest, PastTheStaleIfErrorWindowTheFailureReachesTheCaller) {
  FlightCacheOptions o = Options();
  o.stale_if_error = absl::Seconds(10);
  auto cache = MakeWithExpiredKey(o, absl::Seconds(10));
  Reply r;
  cache->Get("k", r.Callback());
  ASSERT_TRUE(origin_.Answer(1, absl::UnavailableError("origin down")));
  ASSERT_EQ(r.calls(), 1);
  EXPECT_EQ(r.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cache->stats().stale_served, 0);
}

// NOT_FOUND is an answer: it replaces the old value, with or without a negative TTL.
TEST_F(FlightCacheStaleTest, NotFoundReplacesTheStaleValue) {
  for (absl::Duration negative_ttl : {absl::ZeroDuration(), absl::Seconds(5)}) {
    SCOPED_TRACE(absl::StrCat("negative_ttl=", absl::FormatDuration(negative_ttl)));
    FakeOrigin origin;
    FlightCacheOptions o = Options();
    o.stale_if_error = absl::Minutes(10);
    o.negative_ttl = negative_ttl;
    FlightCache cache(o, origin, timers_);
    Reply loaded;
    cache.Get("k", loaded.Callback());
    ASSERT_TRUE(origin.AnswerValue(0, "v1", kTtl));
    timers_.Advance(kTtl + absl::Seconds(1));

    Reply gone;
    cache.Get("k", gone.Callback());
    ASSERT_TRUE(origin.Answer(1, absl::NotFoundError("deleted")));
    ASSERT_EQ(gone.calls(), 1);
    EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound);

    timers_.Advance(negative_ttl + absl::Seconds(1));
    Reply failed;
    cache.Get("k", failed.Callback());
    ASSERT_EQ(origin.fetches(), 3);
    ASSERT_TRUE(origin.Answer(2, absl::UnavailableError("origin down")));
    ASSERT_EQ(failed.calls(), 1);
    EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << "v1 must not come back";
  }
}

// --- refresh-ahead

// A key read every 100 ms with a 1 s TTL and refresh_ahead=0.5: every read is a hit, and the
// origin sees about one fetch per half TTL instead of callers waiting once per TTL.
TEST_F(FlightCacheStaleTest, RefreshAheadKeepsAKeyThatIsReadFromEverWaiting) {
  FlightCacheOptions o = Options();
  o.refresh_ahead = 0.5;
  auto cache = Make(o);
  Load(*cache, "k", 0, "v0");
  int answered = 1;
  for (int step = 1; step <= 50; ++step) {
    timers_.Advance(absl::Milliseconds(100));
    // The origin answers a refresh 50 ms after it was asked (within the next step).
    while (answered < origin_.fetches()) {
      ASSERT_TRUE(origin_.AnswerValue(answered, absl::StrCat("v", answered), kTtl));
      ++answered;
    }
    Reply r;
    cache->Get("k", r.Callback());
    ASSERT_EQ(r.calls(), 1) << "step " << step << ": the read waited for the origin";
    EXPECT_EQ(r.source(), Source::kHit) << "a hit that starts a refresh is still a hit";
  }
  const FlightCacheStats s = cache->stats();
  EXPECT_EQ(s.hits, 50);
  EXPECT_EQ(s.misses, 1);
  // 5 s of reads at one refresh per ~0.5-0.6 s of TTL.
  EXPECT_GE(s.refreshes_started, 8);
  EXPECT_LE(s.refreshes_started, 10);
  EXPECT_EQ(s.stale_served, 0);
}

TEST_F(FlightCacheStaleTest, RefreshAheadStartsOnlyPastItsPointAndOnlyOnce) {
  FlightCacheOptions o = Options();
  o.refresh_ahead = 0.8;
  auto cache = Make(o);
  Load(*cache, "k", 0, "v0");
  timers_.Advance(absl::Milliseconds(700));
  Reply early;
  cache->Get("k", early.Callback());
  EXPECT_EQ(origin_.fetches(), 1) << "0.7 of the TTL is before the refresh point";

  timers_.Advance(absl::Milliseconds(100));
  for (int i = 0; i < 3; ++i) {
    Reply due;
    cache->Get("k", due.Callback());
    EXPECT_EQ(due.value(), "v0");
  }
  // The hit path without a Get (the server's) starts refreshes too; still one in flight.
  EXPECT_TRUE(cache->ReadHit("k", [](const CacheEntryView&) {}));
  EXPECT_EQ(origin_.fetches(), 2);
  EXPECT_EQ(cache->stats().refreshes_started, 1);
}

TEST_F(FlightCacheStaleTest, TheServersHitPathStartsARefreshAhead) {
  FlightCacheOptions o = Options();
  o.refresh_ahead = 0.5;
  auto cache = Make(o);
  Load(*cache, "k", 0, "v0");
  timers_.Advance(absl::Milliseconds(600));
  std::string read;
  EXPECT_TRUE(cache->ReadHit("k", [&](const CacheEntryView& e) { read = std::string(e.value); }));
  EXPECT_EQ(read, "v0");
  EXPECT_EQ(origin_.fetches(), 2);
  EXPECT_EQ(cache->stats().refreshes_started, 1);
}

// A caller that joins a refresh (its entry expired meanwhile) and leaves does not cancel it:
// the refresh holds its own reference.
TEST_F(FlightCacheStaleTest, ACallerLeavingARefreshItJoinedDoesNotCancelIt) {
  FlightCacheOptions o = Options();
  o.refresh_ahead = 0.5;
  auto cache = Make(o);
  Load(*cache, "k", 0, "v0");
  timers_.Advance(absl::Milliseconds(600));
  Reply due;
  cache->Get("k", due.Callback());
  ASSERT_EQ(origin_.fetches(), 2);

  timers_.Advance(absl::Milliseconds(500));  // expired; the refresh is still out
  Reply joined;
  GetHandle handle = cache->Get("k", joined.Callback());
  EXPECT_EQ(origin_.fetches(), 2) << "the miss joins the refresh";
  handle.Cancel();
  ASSERT_EQ(joined.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(origin_.cancelled(1));
  ASSERT_TRUE(origin_.AnswerValue(1, "v1", kTtl));
  Reply after;
  cache->Get("k", after.Callback());
  EXPECT_EQ(after.value(), "v1");
  EXPECT_EQ(after.source(), Source::kHit);
}

TEST_F(FlightCacheStaleTest, NotFoundEntriesAreNeitherRefreshedNorServedStale) {
  FlightCacheOptions o = Options();
  o.refresh_ahead = 0.5;
  o.stale_while_revalidate = absl::Seconds(10);
  o.negative_ttl = absl::Seconds(1);
  auto cache = Make(o);
  Reply gone;
  cache->Get("gone", gone.Callback());
  ASSERT_TRUE(origin_.Answer(0, absl::NotFoundError("no such key")));
  timers_.Advance(absl::Milliseconds(900));
  Reply negative_hit;
  cache->Get("gone", negative_hit.Callback());
  EXPECT_EQ(negative_hit.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(origin_.fetches(), 1);

  timers_.Advance(absl::Milliseconds(200));
  Reply expired;
  cache->Get("gone", expired.Callback());
  EXPECT_EQ(expired.calls(), 0) << "an expired not-found entry is not served stale";
  EXPECT_EQ(origin_.fetches(), 2);
  EXPECT_EQ(cache->stats().refreshes_started, 0);
}

// Stale values are kept in the store: they count against the capacity until they are dropped.
TEST_F(FlightCacheStaleTest, StaleValuesStayInTheStoreForTheLongerWindowOnly) {
  FlightCacheOptions o = Options();
  o.stale_while_revalidate = absl::Seconds(2);
  o.stale_if_error = absl::Seconds(5);
  auto cache = Make(o);
  Load(*cache, "k", 0, "v1");
  const int64_t bytes = cache->stats().bytes;
  timers_.Advance(kTtl + absl::Seconds(4));
  EXPECT_EQ(cache->stats().entries, 1);
  EXPECT_EQ(cache->stats().bytes, bytes);

  // Past the revalidate window but inside the error window: a Get waits, and gets the old value
  // only because its load fails.
  Reply r;
  cache->Get("k", r.Callback());
  EXPECT_EQ(r.calls(), 0);
  ASSERT_TRUE(origin_.Answer(1, absl::UnavailableError("origin down")));
  EXPECT_EQ(r.source(), Source::kStale);

  timers_.Advance(absl::Seconds(1));  // past both windows: the value is dead
  Reply late;
  cache->Get("k", late.Callback());
  ASSERT_TRUE(origin_.Answer(2, absl::UnavailableError("origin down")));
  EXPECT_EQ(late.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cache->stats().entries, 0);
}

}  // namespace
}  // namespace flightcache
