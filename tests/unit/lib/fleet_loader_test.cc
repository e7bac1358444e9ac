// FleetLoader on its own, with a hand-driven load: what it does around shutdown and cancellation,
// where FlightCache would hide it (flight_cache_fleet_test.cc covers the protocol end to end).
#include "internal/fleet_loader.h"

#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_fleet_store.h"

namespace flightcache {
namespace {

using testing::FakeFleetBackend;
using testing::FakeFleetStore;
using testing::FakeTimerQueue;

// What the loader did to one load.
struct LoadLog {
  std::vector<std::string> events;  // "fleet:<value>", "failure:<code>", "fetch"
  absl::AnyInvocable<void(FleetPublication) &&> publish;
  std::stop_source stop;

  // Ends the holder's fetch. `publish` goes with the call: it holds the flight, which holds this.
  void Fetched(FleetPublication publication) {
    auto then = std::move(publish);
    publish = nullptr;
    std::move(then)(std::move(publication));
  }
};

class FakeLoad final : public FleetLoad {
 public:
  FakeLoad(std::string key, std::shared_ptr<LoadLog> log)
      : key_(std::move(key)), log_(std::move(log)) {}
  const std::string& key() const override { return key_; }
  std::stop_token stop_token() const override { return log_->stop.get_token(); }
  void AnswerFromFleet(FleetEntry entry) override {
    log_->events.push_back("fleet:" + entry.value);
  }
  void AnswerFailure(absl::Status status) override {
    log_->events.push_back("failure:" + absl::StatusCodeToString(status.code()));
  }
  void FetchFromOrigin(absl::AnyInvocable<void(FleetPublication) &&> then) override {
    log_->events.push_back("fetch");
    log_->publish = std::move(then);
  }

 private:
  const std::string key_;
  std::shared_ptr<LoadLog> log_;
};

class FleetLoaderTest : public ::testing::Test {
 protected:
  std::shared_ptr<LoadLog> Start(const std::string& key) {
    auto log = std::make_shared<LoadLog>();
    loader_->Start(std::make_unique<FakeLoad>(key, log));
    return log;
  }

  FakeTimerQueue timers_;
  FakeFleetBackend backend_{timers_.clock()};
  FakeFleetStore store_{backend_};
  FakeFleetStore other_{backend_};
  std::shared_ptr<FleetLoader> loader_ =
      std::make_shared<FleetLoader>(FleetLoader::Options{}, store_, timers_);
};

TEST_F(FleetLoaderTest, MissTakesTheLeaseAndPublishesWhatTheFetchGives) {
  auto log = Start("k");
  ASSERT_EQ(log->events, std::vector<std::string>{"fetch"});
  ASSERT_TRUE(backend_.LeaseHolder("k").has_value());
  log->Fetched({.kind = FleetAnnouncement::Kind::kLoaded,
                .entry = FleetEntry{.value = "v", .ttl_remaining = absl::Seconds(9)}});
  ASSERT_TRUE(backend_.Entry("k").has_value());
  EXPECT_EQ(backend_.Entry("k")->value, "v");
  EXPECT_EQ(backend_.Entry("k")->ttl_remaining, absl::Seconds(9));
  EXPECT_FALSE(backend_.LeaseHolder("k").has_value());
  EXPECT_EQ(loader_->stats().leases_won, 1);
}

TEST_F(FleetLoaderTest, StartAfterShutdownAnswersCancelledWithoutTouchingTheStore) {
  loader_->Shutdown();
  auto log = Start("k");
  EXPECT_EQ(log->events, std::vector<std::string>{"failure:CANCELLED"});
  EXPECT_EQ(store_.ops(FakeFleetStore::kRead), 0);
}

TEST_F(FleetLoaderTest, FetchThatEndsAfterShutdownPublishesNothing) {
  auto log = Start("k");
  ASSERT_EQ(log->events, std::vector<std::string>{"fetch"});
  loader_->Shutdown();
  log->Fetched({.kind = FleetAnnouncement::Kind::kLoaded,
                .entry = FleetEntry{.value = "v", .ttl_remaining = absl::Seconds(9)}});
  EXPECT_EQ(store_.ops(FakeFleetStore::kPublish), 0);
  EXPECT_TRUE(backend_.LeaseHolder("k").has_value());  // left to expire, as if the sidecar died
  timers_.Advance(absl::Seconds(10));                  // no renewal after shutdown
  EXPECT_EQ(store_.ops(FakeFleetStore::kRenewLease), 0);
}

TEST_F(FleetLoaderTest, LoadStoppedWhileItsReadIsInFlightIsLeftAlone) {
  store_.Hold(true);
  auto log = Start("k");
  log->stop.request_stop();  // every caller left: the flight was answered CANCELLED by its owner
  store_.Hold(false);
  store_.ReleaseHeld();
  EXPECT_TRUE(log->events.empty());
  EXPECT_EQ(store_.ops(FakeFleetStore::kTakeLease), 0);
}

TEST_F(FleetLoaderTest, WaitingLoadWokenByAnnouncementsOfItsKeyOnly) {
  other_.TakeLease("k", "someone-else", absl::Seconds(2),
                   [](absl::StatusOr<bool> taken) { ASSERT_TRUE(taken.ok() && *taken); });
  auto log = Start("k");
  ASSERT_TRUE(log->events.empty());
  EXPECT_EQ(loader_->waiting(), 1u);
  const int64_t reads = store_.ops(FakeFleetStore::kRead);
  loader_->OnAnnouncement({.kind = FleetAnnouncement::Kind::kLoaded, .key = "j"});
  EXPECT_EQ(store_.ops(FakeFleetStore::kRead), reads);
  loader_->OnAnnouncement({.kind = FleetAnnouncement::Kind::kFailed,
                           .key = "k",
                           .failure = absl::UnavailableError("origin down")});
  EXPECT_EQ(log->events, std::vector<std::string>{"failure:UNAVAILABLE"});
  EXPECT_EQ(loader_->waiting(), 0u);
  log->stop.request_stop();  // after the answer: nothing left to clean up
  EXPECT_EQ(loader_->waiting(), 0u);
}

}  // namespace
}  // namespace flightcache
