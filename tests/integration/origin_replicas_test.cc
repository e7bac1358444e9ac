// An origin of several replicas (--origin=grpc://A,B) over loopback gRPC: the Sidecar in-process,
// one TestOrigin per replica.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/dns_replicas.h"
#include "tests/integration/server_test_util.h"

namespace flightcache::testing {
namespace {

using ::testing::HasSubstr;

class OriginReplicasTest : public SidecarTest {
 protected:
  // The fixture's origin_ is replica A; this is replica B.
  void SetUp() override {
    SidecarTest::SetUp();
    second_ = TestOrigin::Start();
  }
  void TearDown() override {
    SidecarTest::TearDown();
    second_.reset();
  }
  ServerConfig TwoReplicas() const {
    ServerConfig config = BaseConfig();
    config.origin = absl::StrCat(origin_->url(), ",127.0.0.1:", second_->port());
    return config;
  }

  static int64_t Hedges(const TestOrigin& origin) {
    int64_t n = 0;
    for (const FetchRecord& r : origin.records()) n += r.attempt == 2 ? 1 : 0;
    return n;
  }

  std::unique_ptr<TestOrigin> second_;
};

// Replica B is slow (2 s); every fetch that goes to it is hedged after 20 ms, and every hedge
// lands on A: no caller waits for B (1.5 s of margin for a busy machine).
TEST_F(OriginReplicasTest, EveryHedgeGoesToTheOtherReplica) {
  ServerConfig config = TwoReplicas();
  config.cache.hedge.enabled = true;
  config.cache.hedge.delay = absl::Milliseconds(20);
  config.cache.hedge.budget = 1;  // every primary earns a hedge
  StartServer(config);
  second_->SetDefaultBehavior({.latency = absl::Seconds(2)});

  for (int i = 0; i < 20; ++i) {
    v1::GetResponse response;
    const absl::Time start = absl::Now();
    ASSERT_TRUE(Get(absl::StrCat("k", i), &response).ok());
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500)) << "k" << i << " waited for B";
  }
  EXPECT_GT(second_->fetches(), 0) << "B got no primary fetch: nothing was shown";
  EXPECT_EQ(Hedges(*second_), 0) << "a hedge went to the slow primary's own replica";
  EXPECT_GE(Hedges(*origin_), second_->fetches() - 1);  // the last may still be in its delay
}

TEST_F(OriginReplicasTest, AFailingReplicaIsLeftOutAndShownInTheMetrics) {
  ServerConfig config = TwoReplicas();
  config.origin_replicas.eject_after = 3;
  StartServer(config);
  second_->SetDefaultBehavior({.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "broken")});

  int failed = 0;
  for (int i = 0; i < 40; ++i) {
    v1::GetResponse response;
    failed += Get(absl::StrCat("k", i), &response).ok() ? 0 : 1;
  }
  EXPECT_EQ(failed, 3) << "B answered three fetches, then was left out for 10 s";
  EXPECT_EQ(second_->fetches(), 3);
  EXPECT_EQ(origin_->fetches(), 37);

  const std::string text = sidecar_->metrics().ExpositionText();
  const std::string b = absl::StrCat("replica=\"grpc://127.0.0.1:", second_->port(), "\"");
  EXPECT_THAT(text, HasSubstr(absl::StrCat("flightcache_origin_replica_ejected{", b, "} 1")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("flightcache_origin_replica_failures_total{", b, "} 3")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("flightcache_origin_replica_fetches_total{", b, "} 3")));
  EXPECT_THAT(text, HasSubstr("flightcache_origin_replica_fetch_duration_seconds_count{replica="));
}

// grpc://dns:///localhost:PORT: one replica per address the system resolver gives for localhost
// (127.0.0.1, and [::1] where /etc/hosts lists it), each a TestOrigin on that address and port.
using OriginDnsReplicasTest = SidecarTest;

TEST_F(OriginDnsReplicasTest, EveryAddressOfTheNameIsAReplicaAndGetsFetches) {
  const int port = origin_->port();
  absl::StatusOr<std::vector<std::string>> addresses = ResolveAddresses("localhost", port);
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  ASSERT_THAT(*addresses, ::testing::Contains(origin_->address()));
  std::vector<std::unique_ptr<TestOrigin>> others;
  for (const std::string& address : *addresses) {
    if (address == origin_->address()) continue;
    others.push_back(TestOrigin::Start(port, nullptr, address.substr(0, address.rfind(':'))));
  }

  ServerConfig config = BaseConfig();
  config.origin = absl::StrCat("grpc://dns:///localhost:", port);
  StartServer(config);
  for (int i = 0; i < 40; ++i) {
    v1::GetResponse response;
    ASSERT_TRUE(Get(absl::StrCat("k", i), &response).ok()) << "k" << i;
  }
  const std::string text = sidecar_->metrics().ExpositionText();
  std::vector<const TestOrigin*> origins = {origin_.get()};
  for (const auto& other : others) origins.push_back(other.get());
  int64_t fetches = 0;
  for (const TestOrigin* origin : origins) {
    EXPECT_GT(origin->fetches(), 0) << origin->address() << " got no fetch of 40";
    fetches += origin->fetches();
    EXPECT_THAT(text,
                HasSubstr(absl::StrCat("flightcache_origin_replica_fetches_total{replica=\"grpc://",
                                       origin->address(), "\"}")));
  }
  EXPECT_EQ(fetches, 40);
}

}  // namespace
}  // namespace flightcache::testing
