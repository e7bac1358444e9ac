// FlightCache with a fleet tier: several simulated sidecars (each a FlightCache with its own
// origin and FakeFleetStore) on one FakeFleetBackend, on one fake clock. The store answers inline
// unless a test holds its replies, so each step of the protocol happens where the test says.
#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "flightcache/call_context.h"
#include "flightcache/clock.h"
#include "flightcache/fleet_store.h"
#include "flightcache/flight_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_fleet_store.h"
#include "tests/testing/fake_origin.h"
#include "tests/testing/get_blocking.h"
#include "tests/testing/get_reply.h"

namespace flightcache {
namespace {

using testing::FakeFleetBackend;
using testing::FakeFleetStore;
using testing::FakeOrigin;
using testing::FakeTimerQueue;
using ::testing::HasSubstr;

constexpr absl::Duration kLeaseTtl = absl::Seconds(2);

using Reply = testing::GetReply;

// One simulated sidecar.
struct Sidecar {
  Sidecar(FakeFleetBackend& backend, FakeTimerQueue& timers, const FlightCacheOptions& options)
      : store(backend) {
    EXPECT_TRUE(options.Validate().ok()) << options.Validate();
    cache = std::make_unique<FlightCache>(options, origin, timers, nullptr, nullptr, &store);
  }
  ~Sidecar() { cache.reset(); }  // before the store and origin it uses

  Reply Get(const std::string& key) {
    Reply r;
    handles.push_back(cache->Get(key, r.Callback()));
    return r;
  }

  FakeFleetStore store;
  FakeOrigin origin;
  std::unique_ptr<FlightCache> cache;
  std::vector<GetHandle> handles;
};

class FlightCacheFleetTest : public ::testing::Test {
 protected:
  static FlightCacheOptions Options() {
    FlightCacheOptions o;
    o.store.capacity_bytes = 1 << 20;
    o.load_timeout = absl::Seconds(30);  // longer than any lease in these tests
    o.fleet.lease_ttl = kLeaseTtl;
    return o;
  }
  std::unique_ptr<Sidecar> Make(const FlightCacheOptions& o = Options()) {
    return std::make_unique<Sidecar>(backend_, timers_, o);
  }

  FakeTimerQueue timers_;
  FakeFleetBackend backend_{timers_.clock()};
};

TEST(FleetOptionsTest, ValidateChecksBounds) {
  EXPECT_TRUE(FleetOptions{}.Validate().ok());
  EXPECT_EQ(FleetOptions{}.lease_ttl, absl::Seconds(2));
  EXPECT_EQ(FleetOptions{}.max_value_bytes, 1 << 20);
  EXPECT_EQ((FleetOptions{.lease_ttl = absl::ZeroDuration()}).Validate().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((FleetOptions{.lease_ttl = absl::Hours(2)}).Validate().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((FleetOptions{.max_value_bytes = 0}).Validate().code(),
            absl::StatusCode::kInvalidArgument);
  FlightCacheOptions o;
  o.fleet.lease_ttl = -absl::Seconds(1);
  EXPECT_THAT(o.Validate().message(), HasSubstr("fleet.lease_ttl"));
}

TEST_F(FlightCacheFleetTest, HerdOverThreeSidecarsFetchesFromTheOriginOnce) {
  auto a = Make(), b = Make(), c = Make();
  std::vector<Reply> replies;
  for (int i = 0; i < 3; ++i) {
    for (Sidecar* s : {a.get(), b.get(), c.get()}) replies.push_back(s->Get("k"));
  }
  ASSERT_EQ(a->origin.fetches(), 1);
  EXPECT_EQ(b->origin.fetches() + c->origin.fetches(), 0);
  EXPECT_EQ(b->cache->stats().fleet_loads_waiting, 1);  // one local flight, not one per caller

  a->origin.AnswerValue(0, "v", absl::Seconds(60));

  int loaded = 0, fleet = 0, coalesced = 0;
  for (const Reply& r : replies) {
    ASSERT_EQ(r.calls(), 1);
    EXPECT_EQ(r.value(), "v");
    EXPECT_EQ(r.result().ttl_remaining, absl::Seconds(60));
    loaded += r.source() == Source::kLoaded;
    fleet += r.source() == Source::kFleet;
    coalesced += r.source() == Source::kCoalesced;
  }
  EXPECT_EQ(loaded, 1);
  EXPECT_EQ(fleet, 2);  // the caller that started B's flight, and C's
  EXPECT_EQ(coalesced, 6);
  EXPECT_EQ(a->origin.fetches() + b->origin.fetches() + c->origin.fetches(), 1);

  const FlightCacheStats sa = a->cache->stats(), sb = b->cache->stats();
  EXPECT_EQ(sa.fleet_leases_won, 1);
  EXPECT_EQ(sa.fleet_lease_waits, 0);
  EXPECT_EQ(sb.fleet_lease_waits, 1);
  EXPECT_EQ(sb.fleet_hits, 1);
  EXPECT_EQ(sb.fleet_loads_waiting, 0);
  EXPECT_EQ(sb.fleet_errors, 0);
  EXPECT_EQ(c->cache->stats().fleet_hits, 1);
  // Once per local flight: B read the fleet twice (first miss, after registering) and once more
  // on the announcement — not once per caller.
  EXPECT_EQ(b->store.ops(FakeFleetStore::kRead), 3);
  EXPECT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 1);
}

TEST_F(FlightCacheFleetTest, HolderAnswersItsCallersBeforeThePublishIsDone) {
  auto a = Make();
  Reply first = a->Get("k"), second = a->Get("k");
  a->store.Hold(true);  // the fleet is slow to answer the Publish
  a->origin.AnswerValue(0, "v");
  EXPECT_EQ(a->store.ops(FakeFleetStore::kPublish), 1);
  EXPECT_EQ(first.value(), "v");
  EXPECT_EQ(second.value(), "v");
  EXPECT_EQ(a->store.held(), 1u);
  a->store.ReleaseHeld();
}

TEST_F(FlightCacheFleetTest, KeyLoadedOnOneSidecarIsAFleetHitOnAnotherWithTheTtlLeft) {
  auto a = Make(), b = Make();
  Reply first = a->Get("k");
  a->origin.AnswerValue(0, "v", absl::Seconds(60));
  ASSERT_EQ(first.value(), "v");
  ASSERT_TRUE(backend_.Entry("k").has_value());

  timers_.Advance(absl::Seconds(10));
  Reply on_b = b->Get("k");
  ASSERT_EQ(on_b.calls(), 1);
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(on_b.source(), Source::kFleet);
  EXPECT_EQ(on_b.result().ttl_remaining, absl::Seconds(50));
  EXPECT_EQ(b->origin.fetches(), 0);
  EXPECT_EQ(b->cache->stats().fleet_hits, 1);

  // Now cached on B for the TTL the fleet had left.
  timers_.Advance(absl::Seconds(49));
  Reply again = b->Get("k");
  EXPECT_EQ(again.source(), Source::kHit);
  EXPECT_EQ(again.result().ttl_remaining, absl::Seconds(1));
  EXPECT_EQ(b->store.ops(FakeFleetStore::kRead), 1);
}

TEST_F(FlightCacheFleetTest, NotFoundIsSharedWithTheNegativeTtlLeft) {
  FlightCacheOptions o = Options();
  o.negative_ttl = absl::Seconds(5);
  auto a = Make(o), b = Make(o);
  Reply first = a->Get("gone");
  a->origin.Answer(0, absl::NotFoundError("no such key"));
  ASSERT_EQ(first.code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(backend_.Entry("gone").has_value());
  EXPECT_TRUE(backend_.Entry("gone")->not_found);

  timers_.Advance(absl::Seconds(2));
  Reply on_b = b->Get("gone");
  ASSERT_EQ(on_b.calls(), 1);
  EXPECT_EQ(on_b.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(on_b.result().ttl_remaining, absl::Seconds(3));
  EXPECT_EQ(b->origin.fetches(), 0);

  Reply cached = b->Get("gone");  // a negative hit on B, for the 3 s left
  EXPECT_EQ(cached.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cached.source(), Source::kHit);
  EXPECT_EQ(b->cache->stats().negative_hits, 1);
  timers_.Advance(absl::Seconds(3));
  b->Get("gone");
  EXPECT_EQ(b->origin.fetches(), 1);  // expired on B and in the fleet: B loads it
}

TEST_F(FlightCacheFleetTest, FailureReachesEveryWaiterAndIsNotCached) {
  auto a = Make(), b = Make();
  Reply on_a = a->Get("k");
  Reply b1 = b->Get("k"), b2 = b->Get("k");
  ASSERT_EQ(b->cache->stats().fleet_loads_waiting, 1);

  a->origin.Answer(0, absl::InternalError("origin broke"));
  EXPECT_EQ(on_a.code(), absl::StatusCode::kInternal);
  for (const Reply& r : {b1, b2}) {
    ASSERT_EQ(r.calls(), 1);
    EXPECT_EQ(r.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(r.result().status.message(), HasSubstr("origin broke"));
  }
  EXPECT_EQ(b->origin.fetches(), 0);
  EXPECT_FALSE(backend_.Entry("k").has_value());
  EXPECT_FALSE(backend_.LeaseHolder("k").has_value());

  // Not cached anywhere: the next Get on B loads again (and B wins the lease now).
  Reply retry = b->Get("k");
  ASSERT_EQ(b->origin.fetches(), 1);
  b->origin.AnswerValue(0, "v");
  EXPECT_EQ(retry.value(), "v");
  EXPECT_EQ(retry.source(), Source::kLoaded);
}

TEST_F(FlightCacheFleetTest, OriginErrorsReachWaitersAsUnavailable) {
  auto a = Make(), b = Make();
  a->Get("k");
  Reply on_b = b->Get("k");
  a->origin.Answer(0, absl::DeadlineExceededError("slow"));
  EXPECT_EQ(on_b.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(on_b.result().status.message(), HasSubstr("origin fake:// failed"));
}

TEST_F(FlightCacheFleetTest, WaiterTakesOverAfterTheLeaseTtlWhenTheHolderDies) {
  auto a = Make(), b = Make();
  a->Get("k");
  Reply on_b = b->Get("k");
  ASSERT_EQ(a->origin.fetches(), 1);
  a.reset();  // the holder dies mid-load: nothing published, its lease left to expire

  timers_.Advance(kLeaseTtl - absl::Milliseconds(1));
  EXPECT_EQ(b->origin.fetches(), 0) << "took over a lease that was still live";
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_EQ(b->origin.fetches(), 1);
  b->origin.AnswerValue(0, "v");
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(on_b.source(), Source::kLoaded);
  const FlightCacheStats s = b->cache->stats();
  EXPECT_EQ(s.fleet_takeovers, 1);
  EXPECT_EQ(s.fleet_leases_won, 1);
  EXPECT_EQ(s.fleet_loads_waiting, 0);
  EXPECT_TRUE(backend_.Entry("k").has_value());  // B published it
}

TEST_F(FlightCacheFleetTest, HolderWhoseRenewalsFailIsTakenOver) {
  auto a = Make(), b = Make();
  Reply on_a = a->Get("k");
  Reply on_b = b->Get("k");
  a->store.FailAll(true);  // A is cut off from the fleet: its renewals fail
  timers_.Advance(kLeaseTtl);
  ASSERT_EQ(b->origin.fetches(), 1);
  EXPECT_GE(a->cache->stats().fleet_errors, 1);

  a->origin.AnswerValue(0, "from-a");  // A's callers are served; its Publish fails
  EXPECT_EQ(on_a.value(), "from-a");
  b->origin.AnswerValue(0, "from-b");
  EXPECT_EQ(on_b.value(), "from-b");
  ASSERT_TRUE(backend_.Entry("k").has_value());
  EXPECT_EQ(backend_.Entry("k")->value, "from-b");
}

TEST_F(FlightCacheFleetTest, LongLoadRenewsItsLeaseSoNobodyTakesOver) {
  auto a = Make(), b = Make();
  Reply on_a = a->Get("k");
  Reply on_b = b->Get("k");
  for (int i = 0; i < 10; ++i) timers_.Advance(kLeaseTtl / 2);  // 5 lease TTLs
  EXPECT_EQ(b->origin.fetches(), 0) << "B took over a lease that A kept renewing";
  EXPECT_GE(a->store.ops(FakeFleetStore::kRenewLease), 10);
  EXPECT_GE(b->store.ops(FakeFleetStore::kTakeLease), 3);  // B tried, and waited again
  EXPECT_EQ(b->cache->stats().fleet_takeovers, 0);

  a->origin.AnswerValue(0, "v");
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(on_b.source(), Source::kFleet);
  // The renewals stop with the load.
  const int64_t renewals = a->store.ops(FakeFleetStore::kRenewLease);
  timers_.Advance(kLeaseTtl * 3);
  EXPECT_EQ(a->store.ops(FakeFleetStore::kRenewLease), renewals);
}

TEST_F(FlightCacheFleetTest, InvalidateDuringASlowLoadVoidsIt) {
  auto a = Make(), b = Make(), c = Make();
  Reply on_b = b->Get("k");  // B holds the lease, its origin is slow
  Reply on_c = c->Get("k");  // C waits for B
  ASSERT_EQ(b->origin.fetches(), 1);
  ASSERT_EQ(c->cache->stats().fleet_loads_waiting, 1);

  a->cache->Invalidate({"k"});  // the value B is loading is stale now
  EXPECT_EQ(a->store.ops(FakeFleetStore::kInvalidate), 1);
  EXPECT_EQ(b->cache->stats().fleet_invalidations_received, 1);
  // C started over: the lease was voided, so C took it and loads afresh.
  ASSERT_EQ(c->origin.fetches(), 1);
  EXPECT_EQ(c->cache->stats().fleet_leases_won, 1);

  b->origin.AnswerValue(0, "stale");
  EXPECT_EQ(on_b.value(), "stale");  // B's callers were already waiting for this load
  EXPECT_FALSE(backend_.Entry("k").has_value()) << "a voided lease's publish stored its value";
  EXPECT_EQ(on_c.calls(), 0) << "C was woken by a voided load";

  c->origin.AnswerValue(0, "fresh");
  EXPECT_EQ(on_c.value(), "fresh");
  EXPECT_EQ(backend_.Entry("k")->value, "fresh");
  // B did not cache the stale value (its flight was detached): it reads the fresh one.
  Reply b_again = b->Get("k");
  EXPECT_EQ(b_again.value(), "fresh");
  EXPECT_EQ(b_again.source(), Source::kFleet);
}

TEST_F(FlightCacheFleetTest, ReceivedInvalidationDropsTheLocalKey) {
  auto a = Make(), b = Make();
  a->Get("k");
  a->origin.AnswerValue(0, "v1");
  ASSERT_EQ(b->Get("k").source(), Source::kFleet);
  ASSERT_EQ(b->Get("k").source(), Source::kHit);

  EXPECT_EQ(a->cache->Invalidate({"k"}), 1);
  EXPECT_EQ(b->cache->stats().fleet_invalidations_received, 1);
  EXPECT_EQ(b->cache->stats().entries, 0);
  Reply reloaded = b->Get("k");
  ASSERT_EQ(b->origin.fetches(), 1);
  b->origin.AnswerValue(0, "v2");
  EXPECT_EQ(reloaded.value(), "v2");
  EXPECT_EQ(a->cache->stats().fleet_invalidations_received, 0);  // never its own
}

TEST_F(FlightCacheFleetTest, ResubscribeDropsTheLocalCacheAndWakesWaitingLoads) {
  auto a = Make(), b = Make();
  b->Get("other");
  b->origin.AnswerValue(0, "x");
  ASSERT_EQ(b->cache->stats().entries, 1);

  a->Get("k");
  Reply on_b = b->Get("k");
  b->store.DropAnnouncements(true);  // B's subscription breaks...
  a->origin.AnswerValue(0, "v");
  EXPECT_EQ(on_b.calls(), 0);  // ...so B missed the announcement
  b->store.DropAnnouncements(false);

  b->store.Resubscribe();
  EXPECT_EQ(b->cache->stats().entries, 1);  // "other" dropped; "k" stored by the woken load
  ASSERT_EQ(on_b.calls(), 1);
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(on_b.source(), Source::kFleet);
  Reply other = b->Get("other");
  EXPECT_NE(other.source(), Source::kHit);
}

TEST_F(FlightCacheFleetTest, AnnouncementBeforeRegistrationIsNotMissed) {
  auto a = Make(), b = Make();
  a->Get("k");
  b->store.Hold(true);
  Reply on_b = b->Get("k");
  b->store.ReleaseHeld(1);         // B's first Read: a miss
  ASSERT_EQ(b->store.held(), 1u);  // B's TakeLease failed (A holds it); its reply is held
  a->origin.AnswerValue(0, "v");   // announced while B is not yet registered
  b->store.Hold(false);
  b->store.ReleaseHeld();  // B registers, then reads once more
  ASSERT_EQ(on_b.calls(), 1) << "B waits for an announcement it missed";
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(b->origin.fetches(), 0);
}

TEST_F(FlightCacheFleetTest, LeaseTakenByALoadThatWasAnsweredMeanwhileIsGivenBack) {
  auto a = Make(), b = Make(), c = Make();
  a->Get("k");
  Reply on_b = b->Get("k");
  timers_.Advance(kLeaseTtl / 2);
  b->store.Hold(true);
  a->origin.AnswerValue(0, "v");   // B's Read on the announcement is done, its reply (a hit) held
  backend_.Invalidate("k");        // then Redis evicts the entry (allkeys-lru)
  timers_.Advance(kLeaseTtl / 2);  // B's take-over: the lease is free now, so B takes it
  ASSERT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 2);
  ASSERT_TRUE(backend_.LeaseHolder("k").has_value());
  b->store.Hold(false);
  b->store.ReleaseHeld();  // the hit answers B's load; then B learns it holds a lease
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(b->origin.fetches(), 0);
  EXPECT_FALSE(backend_.LeaseHolder("k").has_value()) << "the unused lease keeps the key locked";

  // So after an invalidation, the next load elsewhere takes the lease at once.
  backend_.Invalidate("k");
  Reply on_c = c->Get("k");
  EXPECT_EQ(c->origin.fetches(), 1);
}

TEST_F(FlightCacheFleetTest, EachLoadTakesTheLeaseWithItsOwnRandomToken) {
  auto a = Make();
  a->Get("k1");
  a->Get("k2");
  const std::optional<std::string> t1 = backend_.LeaseHolder("k1"), t2 = backend_.LeaseHolder("k2");
  ASSERT_TRUE(t1.has_value() && t2.has_value());
  EXPECT_THAT(*t1, ::testing::MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(*t1, *t2);
}

TEST_F(FlightCacheFleetTest, StoreErrorsFallBackToTheOrigin) {
  auto b = Make();
  b->store.FailAll(true);
  Reply r = b->Get("k");
  ASSERT_EQ(b->origin.fetches(), 1);
  b->origin.AnswerValue(0, "v");
  EXPECT_TRUE(r.result().status.ok());
  EXPECT_EQ(r.value(), "v");
  EXPECT_EQ(r.source(), Source::kLoaded);
  const FlightCacheStats s = b->cache->stats();
  EXPECT_EQ(s.fleet_errors, 1);
  EXPECT_EQ(s.fleet_fallbacks, 1);
  EXPECT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 0);

  b->cache->Invalidate({"k"});  // fire and forget: its error is only counted
  EXPECT_EQ(b->cache->stats().fleet_errors, 2);
}

TEST_F(FlightCacheFleetTest, ErrorOnTheLeaseFallsBackToTheOrigin) {
  auto b = Make();
  b->store.Hold(true);
  Reply r = b->Get("k");  // the Read is done, its reply (a miss) held
  b->store.FailNext(1);   // the TakeLease that follows it fails
  b->store.Hold(false);
  b->store.ReleaseHeld();
  ASSERT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 1);
  ASSERT_EQ(b->origin.fetches(), 1);
  b->origin.AnswerValue(0, "v");
  EXPECT_EQ(r.value(), "v");
  EXPECT_EQ(b->cache->stats().fleet_errors, 1);
  EXPECT_EQ(b->store.ops(FakeFleetStore::kPublish), 0);  // no lease, nothing to publish
}

TEST_F(FlightCacheFleetTest, ErrorWhileWaitingFallsBackToTheOrigin) {
  auto a = Make(), b = Make();
  a->Get("k");
  Reply on_b = b->Get("k");
  b->store.FailAll(true);
  timers_.Advance(kLeaseTtl);  // the take-over attempt fails
  ASSERT_EQ(b->origin.fetches(), 1);
  EXPECT_EQ(b->cache->stats().fleet_loads_waiting, 0);
  b->origin.AnswerValue(0, "v");
  EXPECT_EQ(on_b.value(), "v");
  EXPECT_EQ(b->cache->stats().fleet_fallbacks, 1);
}

TEST_F(FlightCacheFleetTest, CannotWaitFetchesLocally) {
  auto a = Make(), b = Make();
  a->Get("k");
  b->store.SetCanWait(false);
  Reply on_b = b->Get("k");
  ASSERT_EQ(b->origin.fetches(), 1);
  EXPECT_EQ(b->cache->stats().fleet_lease_waits, 0);
  EXPECT_EQ(b->cache->stats().fleet_fallbacks, 1);
  b->origin.AnswerValue(0, "v");
  EXPECT_EQ(on_b.value(), "v");
}

TEST_F(FlightCacheFleetTest, ValueLargerThanTheFleetMaximumStaysLocal) {
  FlightCacheOptions o = Options();
  o.fleet.max_value_bytes = 10;
  auto a = Make(o), b = Make(o);
  Reply on_a = a->Get("big");
  Reply on_b = b->Get("big");
  const std::string big(100, 'x');
  a->origin.AnswerValue(0, big);
  EXPECT_EQ(on_a.value(), big);
  EXPECT_FALSE(backend_.Entry("big").has_value());
  ASSERT_EQ(b->origin.fetches(), 1);  // told "not shared": B fetches it itself
  b->origin.AnswerValue(0, big);
  EXPECT_EQ(on_b.value(), big);
  EXPECT_EQ(b->store.ops(FakeFleetStore::kPublish), 0);
  EXPECT_EQ(b->cache->stats().fleet_fallbacks, 0);
}

TEST_F(FlightCacheFleetTest, WaitingLoadWhoseCallerLeavesIsCleanedUp) {
  auto a = Make(), b = Make();
  a->Get("k");
  Reply on_b = b->Get("k");
  ASSERT_EQ(b->cache->stats().fleet_loads_waiting, 1);
  const size_t timers_before = timers_.pending();

  b->handles.back().Cancel();
  EXPECT_EQ(on_b.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(b->cache->stats().fleet_loads_waiting, 0);
  EXPECT_EQ(timers_.pending(), timers_before - 2);  // B's load timeout and take-over timer

  const int64_t reads = b->store.ops(FakeFleetStore::kRead);
  a->origin.AnswerValue(0, "v");  // the announcement reaches B: nobody waits for it
  EXPECT_EQ(b->store.ops(FakeFleetStore::kRead), reads);
  timers_.Advance(kLeaseTtl * 2);
  EXPECT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 1);
  EXPECT_EQ(on_b.calls(), 1);
}

TEST_F(FlightCacheFleetTest, WaitingLoadThatTimesOutIsCleanedUp) {
  FlightCacheOptions o = Options();
  o.load_timeout = absl::Seconds(1);  // shorter than the lease
  auto a = Make(), b = Make(o);
  a->Get("k");
  Reply on_b = b->Get("k");
  timers_.Advance(absl::Seconds(1));
  EXPECT_EQ(on_b.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b->cache->stats().fleet_loads_waiting, 0);
  timers_.Advance(kLeaseTtl * 2);  // no take-over for a load nobody waits for
  EXPECT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 1);
  EXPECT_EQ(b->origin.fetches(), 0);
}

TEST_F(FlightCacheFleetTest, DestroyedCacheStopsListeningAndLeavesNoTimerBehind) {
  auto a = Make(), b = Make();
  EXPECT_TRUE(b->store.has_listener());
  a->Get("k");
  Reply on_b = b->Get("k");
  const size_t timers_before = timers_.pending();
  b->cache.reset();
  EXPECT_FALSE(b->store.has_listener());
  EXPECT_EQ(timers_.pending(), timers_before - 2);  // B's load timeout and take-over timer
  EXPECT_EQ(on_b.code(), absl::StatusCode::kCancelled);
  a->origin.AnswerValue(0, "v");  // published to nobody
  timers_.Advance(kLeaseTtl * 3);
}

TEST_F(FlightCacheFleetTest, HolderWhoseCallersLeaveLetsTheWaitersLoad) {
  auto a = Make(), b = Make();
  a->Get("k");
  Reply on_b = b->Get("k");
  a->handles.back().Cancel();  // A's only caller leaves: A's load is cancelled
  EXPECT_TRUE(a->origin.cancelled(0));
  EXPECT_FALSE(backend_.LeaseHolder("k").has_value());  // given back, not left to expire
  ASSERT_EQ(b->origin.fetches(), 1);                    // B did not wait for a lease_ttl
  b->origin.AnswerValue(0, "v");
  EXPECT_EQ(on_b.value(), "v");
}

TEST_F(FlightCacheFleetTest, DestructorWaitsForTheStoreCallbacksInProgress) {
  auto b = Make();
  b->store.Hold(true);
  Reply r = b->Get("k");  // its Read's reply is held
  absl::Notification destroyed;
  std::thread destroyer([&] {
    b->cache.reset();
    destroyed.Notify();
  });
  EXPECT_FALSE(destroyed.WaitForNotificationWithTimeout(absl::Milliseconds(50)))
      << "the cache went away while the store still had to call it back";
  b->store.Hold(false);
  b->store.ReleaseHeld();
  EXPECT_TRUE(destroyed.WaitForNotificationWithTimeout(absl::Seconds(30)));
  destroyer.join();
  EXPECT_EQ(r.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(b->origin.fetches(), 0);
  EXPECT_EQ(b->store.ops(FakeFleetStore::kTakeLease), 0);  // nothing started after shutdown
}

TEST_F(FlightCacheFleetTest, InvalidateGoesToTheFleet) {
  auto a = Make();
  a->Get("k");
  a->origin.AnswerValue(0, "v");
  ASSERT_TRUE(backend_.Entry("k").has_value());
  EXPECT_EQ(a->cache->Invalidate({"k", "j"}), 1);
  EXPECT_FALSE(backend_.Entry("k").has_value());
  EXPECT_EQ(a->cache->stats().fleet_errors, 0);
}

// Answers every fetch with "v:<key>" after `delay`, on the timer thread (cancellation is left to
// the fetcher: the answer comes anyway, as from a slow origin).
class DelayedOrigin final : public Origin {
 public:
  DelayedOrigin(TimerQueue& timers, absl::Duration delay) : timers_(timers), delay_(delay) {}
  void Fetch(const FetchRequest& request, std::stop_token, FetchCallback done) override {
    fetches_.fetch_add(1);
    timers_.RunAfter(delay_, [key = request.key, done = std::move(done)]() mutable {
      done(FetchResult{.value = absl::StrCat("v:", key), .ttl = absl::Milliseconds(50)});
    });
  }
  std::string Describe() const override { return "delayed://"; }
  int64_t fetches() const { return fetches_.load(); }

 private:
  TimerQueue& timers_;
  const absl::Duration delay_;
  std::atomic<int64_t> fetches_{0};
};

// Real threads and real time: callers on several threads, fleet replies and origin answers on the
// timer thread, invalidations, resubscriptions and store errors racing with the loads. Every Get
// must end OK with the key's value (the fleet never makes a Get fail), and nothing may leak or
// race (run under TSan and ASan).
TEST(FlightCacheFleetConcurrencyTest, ManyThreadsManySidecarsEveryGetSucceeds) {
  ThreadTimerQueue timers;
  FakeFleetBackend backend(timers.clock());
  FlightCacheOptions o;
  o.store.capacity_bytes = 1 << 20;
  o.load_timeout = absl::Seconds(20);
  o.fleet.lease_ttl = absl::Milliseconds(30);
  constexpr int kSidecars = 3;
  std::vector<std::unique_ptr<FakeFleetStore>> stores;
  std::vector<std::unique_ptr<DelayedOrigin>> origins;
  std::vector<std::unique_ptr<FlightCache>> caches;
  for (int i = 0; i < kSidecars; ++i) {
    stores.push_back(std::make_unique<FakeFleetStore>(backend));
    stores.back()->ReplyOn(&timers);
    origins.push_back(std::make_unique<DelayedOrigin>(timers, absl::Milliseconds(2)));
    caches.push_back(std::make_unique<FlightCache>(o, *origins.back(), timers, nullptr, nullptr,
                                                   stores.back().get()));
  }

  std::atomic<bool> stop{false};
  std::thread chaos([&] {
    std::mt19937 random(7);
    while (!stop.load()) {
      const int i = static_cast<int>(random() % kSidecars);
      switch (random() % 4) {
        case 0:
          caches[i]->Invalidate({absl::StrCat("k", random() % 8)});
          break;
        case 1:
          stores[i]->Resubscribe();
          break;
        case 2:
          stores[i]->FailNext(2);
          break;
        case 3:
          stores[i]->SetCanWait(random() % 4 != 0);
          break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  constexpr int kThreads = 6, kGetsPerThread = 150;
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      std::mt19937 random(t);
      for (int n = 0; n < kGetsPerThread; ++n) {
        const std::string key = absl::StrCat("k", random() % 8);
        FlightCache& cache = *caches[random() % kSidecars];
        const GetResult r =
            testing::GetBlocking(cache, key, CallContext::WithTimeout(absl::Seconds(30)));
        if (!r.status.ok() || r.value == nullptr || *r.value != absl::StrCat("v:", key)) {
          if (failures.fetch_add(1) < 5) {
            ADD_FAILURE() << key << ": " << r.status << " "
                          << (r.value ? std::string(*r.value) : "<null>");
          }
        }
      }
    });
  }
  for (std::thread& t : callers) t.join();
  stop.store(true);
  chaos.join();
  EXPECT_EQ(failures.load(), 0);
  int64_t fetches = 0, fleet_hits = 0;
  for (int i = 0; i < kSidecars; ++i) {
    fetches += origins[i]->fetches();
    fleet_hits += caches[i]->stats().fleet_hits;
  }
  EXPECT_GT(fleet_hits, 0);
  EXPECT_LT(fetches, kThreads * kGetsPerThread);
  caches.clear();  // before the stores and origins; replies still queued run into nothing
}

}  // namespace
}  // namespace flightcache
