// Serving stale and refreshing ahead over loopback gRPC: the Sidecar in-process, a TestOrigin.
// Values get short TTLs from the origin (ttl_ms); a test waits for one to expire by reading it
// until it is no longer a hit, a bounded loop.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/server_test_util.h"

namespace flightcache::testing {
namespace {

constexpr int64_t kShortTtlMs = 100;

class StaleServingTest : public SidecarTest {
 protected:
  // Loads `key` with a kShortTtlMs TTL.
  void LoadShortLived(const std::string& key) {
    origin_->SetBehavior(key, {.ttl_ms = kShortTtlMs});
    v1::GetResponse response;
    ASSERT_TRUE(Get(key, &response).ok());
    ASSERT_EQ(response.source(), v1::SOURCE_LOADED);
  }

  // Reads `key` (every 10 ms, for 10 s at most) until the answer is not a hit; returns it.
  grpc::Status ReadUntilNotAHit(const std::string& key, v1::GetResponse* response) {
    grpc::Status status;
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    do {
      response->Clear();
      status = Get(key, response);
      if (!status.ok() || response->source() != v1::SOURCE_HIT) return status;
      absl::SleepFor(absl::Milliseconds(10));
    } while (absl::Now() < give_up);
    ADD_FAILURE() << key << " was still a hit after 10 s";
    return status;
  }
};

TEST_F(StaleServingTest, StaleWhileRevalidateAnswersWithoutWaitingForTheRefresh) {
  ServerConfig config = BaseConfig();
  config.cache.stale_while_revalidate = absl::Minutes(1);
  StartServer(config);
  LoadShortLived("k");
  origin_->SetBehavior("k", {.ttl_ms = 60'000, .hold = true});  // the refresh hangs

  v1::GetResponse response;
  ASSERT_TRUE(ReadUntilNotAHit("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_STALE);
  EXPECT_EQ(response.value(), "k#1");
  EXPECT_GE(response.stale_ms(), 0);
  EXPECT_LT(response.stale_ms(), 60'000);
  EXPECT_EQ(response.ttl_remaining_ms(), 0);
  ASSERT_TRUE(origin_->WaitForHeld("k", 1)) << "no refresh reached the origin";
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Get("k", &response, absl::Seconds(2)).ok()) << "a stale read waited";
    EXPECT_EQ(response.source(), v1::SOURCE_STALE);
  }
  EXPECT_EQ(origin_->fetches("k"), 2) << "one refresh for every stale read";

  origin_->Release("k");
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.loads_succeeded >= 2; }));
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(response.value(), "k#2");
  v1::StatsResponse stats;
  ASSERT_TRUE(Stats(&stats).ok());
  EXPECT_GE(stats.stale_served(), 6);
  EXPECT_EQ(stats.refreshes_started(), 1);
}

TEST_F(StaleServingTest, StaleIfErrorServesTheOldValueWhileTheOriginFailsAndWhenItIsGone) {
  ServerConfig config = BaseConfig();
  config.cache.stale_if_error = absl::Minutes(1);
  StartServer(config);
  LoadShortLived("k");
  origin_->SetBehavior("k", {.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")});

  v1::GetResponse response;
  ASSERT_TRUE(ReadUntilNotAHit("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_STALE);
  EXPECT_EQ(response.value(), "k#1");
  EXPECT_EQ(origin_->fetches("k"), 2) << "stale-if-error tries the origin first";

  origin_->Stop();  // connection refused from now on
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_STALE);
  EXPECT_EQ(response.value(), "k#1");
  // A key never loaded has nothing stale to offer.
  EXPECT_EQ(Get("never", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(StaleServingTest, WithoutStaleIfErrorTheOriginsFailureReachesTheCaller) {
  StartServer();
  LoadShortLived("k");
  origin_->SetBehavior("k", {.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")});
  v1::GetResponse response;
  EXPECT_EQ(ReadUntilNotAHit("k", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(StaleServingTest, BatchGetServesStalePerKeyExactlyAsGet) {
  ServerConfig config = BaseConfig();
  config.cache.stale_if_error = absl::Minutes(1);
  StartServer(config);
  LoadShortLived("stale");
  origin_->SetBehavior("fresh", {.ttl_ms = 60'000});
  v1::GetResponse response;
  ASSERT_TRUE(Get("fresh", &response).ok());
  origin_->Stop();
  ASSERT_TRUE(ReadUntilNotAHit("stale", &response).ok());  // now past its TTL

  v1::BatchGetResponse batch;
  ASSERT_TRUE(BatchGet({"stale", "never", "fresh"}, &batch).ok());
  ASSERT_EQ(batch.results_size(), 3);
  const v1::KeyResult& stale = batch.results(0);
  EXPECT_EQ(stale.code(), 0);
  EXPECT_EQ(stale.source(), v1::SOURCE_STALE);
  EXPECT_EQ(stale.value(), "stale#1");
  EXPECT_GE(stale.stale_ms(), 0);
  EXPECT_EQ(stale.ttl_remaining_ms(), 0);
  EXPECT_EQ(batch.results(1).code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_EQ(batch.results(2).source(), v1::SOURCE_HIT);
  EXPECT_EQ(batch.results(2).stale_ms(), 0);
}

TEST_F(StaleServingTest, NothingStaleIsServedAfterInvalidate) {
  ServerConfig config = BaseConfig();
  config.cache.stale_while_revalidate = absl::Minutes(1);
  config.cache.stale_if_error = absl::Minutes(1);
  StartServer(config);
  LoadShortLived("k");
  origin_->SetBehavior("k", {.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")});
  v1::GetResponse response;
  ASSERT_TRUE(ReadUntilNotAHit("k", &response).ok());
  ASSERT_EQ(response.source(), v1::SOURCE_STALE);

  int64_t removed = 0;
  ASSERT_TRUE(Invalidate({"k"}, &removed).ok());
  EXPECT_EQ(removed, 1);
  EXPECT_EQ(Get("k", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// The server's hit path (FlightCache::ReadHit) starts refreshes too: a key read every 50 ms
// with a 2 s TTL and --refresh-ahead=0.5 is a hit on every read, while the origin sees a
// refresh about once a second.
TEST_F(StaleServingTest, RefreshAheadKeepsAReadKeyFromEverWaitingForTheOrigin) {
  ServerConfig config = BaseConfig();
  config.cache.refresh_ahead = 0.5;
  StartServer(config);
  origin_->SetBehavior("hot", {.ttl_ms = 2000});
  v1::GetResponse response;
  ASSERT_TRUE(Get("hot", &response).ok());

  const absl::Time end = absl::Now() + absl::Seconds(4);
  int reads = 0;
  while (absl::Now() < end) {
    ASSERT_TRUE(Get("hot", &response).ok());
    EXPECT_EQ(response.source(), v1::SOURCE_HIT) << "read " << reads << " waited for the origin";
    ++reads;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(origin_->fetches("hot"), 3) << "no refresh ahead";
  v1::StatsResponse stats;
  ASSERT_TRUE(Stats(&stats).ok());
  EXPECT_GE(stats.refreshes_started(), 2);
  EXPECT_EQ(stats.misses(), 1);
}

}  // namespace
}  // namespace flightcache::testing
