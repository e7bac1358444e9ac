// The fleet tier end to end (docs/PROTOCOL.md, "Beyond one pod"): several built
// flightcache-server processes share one real redis-server and one origin (a TestOrigin in this
// process, which counts every fetch), and the test watches what callers and the origin see.
//
// - A herd spread over the sidecars costs one origin fetch; the other sidecars answer from the
//   fleet (SOURCE_FLEET), with the remaining TTL, for values and NOT_FOUND alike.
// - A failed load reaches every waiter in the fleet and is not cached.
// - Invalidate on one sidecar reaches the others (the delay is measured), and voids a load in
//   flight: nobody serves that load's value afterwards.
// - A lease holder that dies mid-load is taken over after the lease expires.
// - Redis killed, restarted or stopped (SIGSTOP): Gets go on answering, and the tier resumes.
//
// Real time: sidecars are processes; waits are bounded and generous, asserted figures are counts.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/e2e/get_batch.h"
#include "tests/e2e/server_process.h"
#include "tests/testing/redis_process.h"
#include "tests/testing/test_origin.h"

namespace flightcache {
namespace {

using e2e::ChildProcess;
using e2e::GetBatch;
using e2e::ServerCommand;
using e2e::SetTimeout;
using e2e::WaitForServerPort;
using testing::OriginBehavior;
using testing::RedisProcess;
using testing::TestOrigin;

class FleetE2eTest : public ::testing::Test {
 protected:
  struct Sidecar {
    std::unique_ptr<ChildProcess> process;
    std::unique_ptr<v1::Cache::Stub> stub;
  };

  void SetUp() override {
    origin_ = TestOrigin::Start();
    ASSERT_TRUE(redis_.Start()) << redis_.Log();
  }

  void TearDown() override {
    for (Sidecar& sidecar : sidecars_) {
      if (sidecar.process != nullptr) sidecar.process->Terminate();
    }
    sidecars_.clear();
    origin_.reset();
  }

  std::string FleetUrl() const { return absl::StrCat("redis://127.0.0.1:", redis_.port()); }

  // Starts `n` sidecars on the fleet and waits until each has its Redis connections up (it logs
  // "fleet tier connected" once both the command connection and the subscription are). Not the
  // 20 ms default --fleet-timeout: under ASan on a busy 2-core machine a healthy Redis call took
  // longer (a Publish timed out, its lease was held until it expired and a third fetch followed);
  // the tests about a failing Redis pass their own (the later flag wins).
  void StartSidecars(int n, const std::vector<std::string>& extra_flags = {}) {
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> flags = {
          "--listen=127.0.0.1:0",    "--metrics-listen=",    "--origin=" + origin_->url(),
          "--fleet=" + FleetUrl(),   "--drain-timeout=2s",   "--load-timeout=30s",
          "--fleet-lease-ttl=500ms", "--fleet-timeout=250ms"};
      flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
      Sidecar sidecar;
      sidecar.process = std::make_unique<ChildProcess>(ServerCommand(flags));
      const int port = WaitForServerPort(*sidecar.process);
      ASSERT_GT(port, 0) << sidecar.process->err();
      ASSERT_FALSE(sidecar.process->WaitForLine("fleet tier connected", absl::Seconds(30)).empty())
          << "sidecar " << i << " never connected to the fleet: " << sidecar.process->err();
      sidecar.stub = v1::Cache::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                            grpc::InsecureChannelCredentials()));
      sidecars_.push_back(std::move(sidecar));
    }
  }

  grpc::Status Get(int sidecar, const std::string& key, v1::GetResponse* response,
                   absl::Duration timeout = absl::Seconds(20)) {
    grpc::ClientContext context;
    SetTimeout(context, timeout);
    v1::GetRequest request;
    request.set_key(key);
    return sidecars_[sidecar].stub->Get(&context, request, response);
  }

  v1::StatsResponse Stats(int sidecar) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::StatsResponse response;
    const grpc::Status status =
        sidecars_[sidecar].stub->Stats(&context, v1::StatsRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  void Invalidate(int sidecar, const std::string& key) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::InvalidateRequest request;
    request.add_keys(key);
    v1::InvalidateResponse response;
    const grpc::Status status = sidecars_[sidecar].stub->Invalidate(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Polls Get(key) on `sidecar` until its value is not `old_value`; the time it took, or an
  // infinite duration if it still served `old_value` after `timeout`.
  absl::Duration TimeUntilNotServing(int sidecar, const std::string& key,
                                     const std::string& old_value, absl::Time since,
                                     absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time limit = absl::Now() + timeout;
    while (absl::Now() < limit) {
      v1::GetResponse response;
      const grpc::Status status = Get(sidecar, key, &response);
      if (status.ok() && response.value() != old_value) return absl::Now() - since;
      absl::SleepFor(absl::Microseconds(200));
    }
    return absl::InfiniteDuration();
  }

  std::vector<std::unique_ptr<v1::Cache::Stub>> Stubs() {
    std::vector<std::unique_ptr<v1::Cache::Stub>> stubs;
    for (int i = 0; i < static_cast<int>(sidecars_.size()); ++i) {
      for (int channel = 0; channel < 4; ++channel) {
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        stubs.push_back(v1::Cache::NewStub(grpc::CreateCustomChannel(
            absl::StrCat("127.0.0.1:", WaitPortOf(i)), grpc::InsecureChannelCredentials(), args)));
      }
    }
    return stubs;
  }

  int WaitPortOf(int sidecar) { return WaitForServerPort(*sidecars_[sidecar].process); }

  std::unique_ptr<TestOrigin> origin_;
  RedisProcess redis_;
  std::vector<Sidecar> sidecars_;
};

// 1,000 callers spread over 4 sidecars ask for one cold key while the origin takes 300 ms.
TEST_F(FleetE2eTest, AHerdSpreadOverTheFleetCostsOneOriginFetch) {
  constexpr int kSidecars = 4;
  constexpr int kCallers = 1000;
  StartSidecars(kSidecars);
  origin_->SetBehavior("herd", {.latency = absl::Milliseconds(300)});
  GetBatch batch(Stubs(), std::vector<std::string>(kCallers, "herd"), absl::Seconds(30));
  ASSERT_TRUE(batch.WaitAll(absl::Seconds(60))) << "only " << batch.done() << " answered";
  int loaded = 0, fleet = 0, ok = 0;
  for (const auto& call : batch.calls()) {
    if (!call->status.ok()) continue;
    ++ok;
    EXPECT_EQ(call->response.value(), "herd#1");
    loaded += call->response.source() == v1::SOURCE_LOADED ? 1 : 0;
    fleet += call->response.source() == v1::SOURCE_FLEET ? 1 : 0;
  }
  EXPECT_EQ(ok, kCallers);
  EXPECT_EQ(origin_->fetches("herd"), 1);
  EXPECT_EQ(loaded, 1);
  // One local flight per other sidecar, answered from the fleet (its joiners are COALESCED).
  EXPECT_EQ(fleet, kSidecars - 1);
  int64_t leases_won = 0, lease_waits = 0;
  for (int i = 0; i < kSidecars; ++i) {
    leases_won += Stats(i).fleet_leases_won();
    lease_waits += Stats(i).fleet_lease_waits();
  }
  EXPECT_EQ(leases_won, 1);
  EXPECT_EQ(lease_waits, kSidecars - 1);
}

TEST_F(FleetE2eTest, AKeyLoadedOnOneSidecarIsAFleetHitElsewhereWithTheTtlThatRemains) {
  StartSidecars(2);
  origin_->SetBehavior("user:1", {.ttl_ms = 10'000});
  v1::GetResponse on_a, on_b;
  ASSERT_TRUE(Get(0, "user:1", &on_a).ok());
  EXPECT_EQ(on_a.source(), v1::SOURCE_LOADED);
  absl::SleepFor(absl::Milliseconds(300));  // B must see less than a fresh TTL
  ASSERT_TRUE(Get(1, "user:1", &on_b).ok());
  EXPECT_EQ(on_b.source(), v1::SOURCE_FLEET);
  EXPECT_EQ(on_b.value(), "user:1#1");
  EXPECT_GT(on_b.ttl_remaining_ms(), 0);
  EXPECT_LE(on_b.ttl_remaining_ms(), 10'000 - 300 + 5);
  EXPECT_EQ(origin_->fetches("user:1"), 1);
  EXPECT_EQ(Stats(1).fleet_hits(), 1);

  // NOT_FOUND too: cached in the fleet with the negative TTL.
  origin_->SetBehavior("gone", {.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no")});
  v1::GetResponse response;
  EXPECT_EQ(Get(0, "gone", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get(1, "gone", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(origin_->fetches("gone"), 1);
  EXPECT_EQ(Stats(1).fleet_hits(), 2);
}

TEST_F(FleetE2eTest, AFailedLoadReachesEveryWaiterInTheFleetAndIsNotCached) {
  StartSidecars(3);
  origin_->SetBehavior("broken",
                       {.latency = absl::Milliseconds(300),
                        .status = grpc::Status(grpc::StatusCode::INTERNAL, "origin bug")});
  GetBatch batch(Stubs(), std::vector<std::string>(300, "broken"), absl::Seconds(30));
  ASSERT_TRUE(batch.WaitAll(absl::Seconds(60))) << "only " << batch.done() << " answered";
  for (const auto& call : batch.calls()) {
    EXPECT_EQ(call->status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << call->status.error_message();
  }
  EXPECT_EQ(origin_->fetches("broken"), 1);
  // Not cached anywhere: the next Get fetches again.
  origin_->SetBehavior("broken", {});
  v1::GetResponse response;
  ASSERT_TRUE(Get(2, "broken", &response).ok());
  EXPECT_EQ(response.value(), "broken#2");
  EXPECT_EQ(origin_->fetches("broken"), 2);
}

TEST_F(FleetE2eTest, InvalidateOnOneSidecarReachesTheOthers) {
  constexpr int kSidecars = 3;
  constexpr int kRounds = 20;
  StartSidecars(kSidecars);
  std::vector<double> delays_ms;
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = absl::StrCat("inv-", round);
    v1::GetResponse response;
    for (int i = 0; i < kSidecars; ++i) ASSERT_TRUE(Get(i, key, &response).ok());
    ASSERT_EQ(response.value(), key + "#1");
    const absl::Time sent = absl::Now();
    Invalidate(0, key);
    for (int i = 1; i < kSidecars; ++i) {
      const absl::Duration delay = TimeUntilNotServing(i, key, key + "#1", sent);
      ASSERT_NE(delay, absl::InfiniteDuration())
          << "sidecar " << i << " still serves the old value";
      delays_ms.push_back(absl::ToDoubleMilliseconds(delay));
    }
  }
  std::sort(delays_ms.begin(), delays_ms.end());
  std::printf("invalidation reached the other sidecars in p50 %.2f ms, max %.2f ms\n",
              delays_ms[delays_ms.size() / 2], delays_ms.back());
  RecordProperty("invalidation_p50_us", static_cast<int>(delays_ms[delays_ms.size() / 2] * 1000));
  RecordProperty("invalidation_max_us", static_cast<int>(delays_ms.back() * 1000));
  EXPECT_GE(Stats(1).fleet_invalidations_received(), kRounds);
  EXPECT_EQ(Stats(0).fleet_invalidations_received(), 0);  // its own announcements are not news
}

// B holds the lease and its fetch is held at the origin; A invalidates the key; then B's fetch
// answers "#1". That value must not be stored anywhere: every sidecar then serves "#2".
TEST_F(FleetE2eTest, AnInvalidateDuringALoadVoidsItsLease) {
  StartSidecars(3);
  origin_->SetScript([](const std::string& key, uint32_t, int64_t nth) {
    return OriginBehavior{.hold = key == "slow" && nth == 1};
  });
  v1::GetResponse held_response;
  grpc::Status held_status;
  std::thread caller([&] { held_status = Get(1, "slow", &held_response); });
  ASSERT_TRUE(origin_->WaitForHeld("slow", 1)) << "B never fetched";
  Invalidate(0, "slow");
  // B must have heard of it before its load ends (else it would keep "#1" until it heard).
  const absl::Time limit = absl::Now() + absl::Seconds(10);
  while (Stats(1).fleet_invalidations_received() < 1 && absl::Now() < limit) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_GE(Stats(1).fleet_invalidations_received(), 1) << "B never heard of the invalidation";
  EXPECT_EQ(origin_->Release("slow"), 1);
  caller.join();
  ASSERT_TRUE(held_status.ok()) << held_status.error_message();
  EXPECT_EQ(held_response.value(), "slow#1");  // B's caller gets the load it waited for
  for (int i : {2, 1, 0}) {
    v1::GetResponse response;
    ASSERT_TRUE(Get(i, "slow", &response).ok());
    EXPECT_EQ(response.value(), "slow#2") << "sidecar " << i;
  }
  EXPECT_EQ(origin_->fetches("slow"), 2);
}

TEST_F(FleetE2eTest, ALeaseWhoseHolderDiesIsTakenOverAfterItExpires) {
  StartSidecars(2);
  origin_->SetScript([](const std::string& key, uint32_t, int64_t nth) {
    return OriginBehavior{.hold = key == "orphan" && nth == 1};
  });
  std::thread a_caller([&] {
    v1::GetResponse response;
    Get(0, "orphan", &response, absl::Seconds(20));  // fails when A dies
  });
  ASSERT_TRUE(origin_->WaitForHeld("orphan", 1)) << "A never fetched";
  // B's callers wait for A's lease.
  std::vector<std::unique_ptr<v1::Cache::Stub>> b_stub;
  b_stub.push_back(v1::Cache::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", WaitPortOf(1)),
                                                          grpc::InsecureChannelCredentials())));
  GetBatch on_b(b_stub, std::vector<std::string>(10, "orphan"), absl::Seconds(20));
  const absl::Time limit = absl::Now() + absl::Seconds(10);
  while (Stats(1).fleet_lease_waits() < 1 && absl::Now() < limit) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(Stats(1).fleet_lease_waits(), 1) << "B did not wait for A's lease";
  const absl::Time killed = absl::Now();
  sidecars_[0].process->Signal(SIGKILL);
  a_caller.join();
  ASSERT_TRUE(on_b.WaitAll(absl::Seconds(30))) << "only " << on_b.done() << " answered";
  const absl::Duration took = absl::Now() - killed;
  for (const auto& call : on_b.calls()) {
    ASSERT_TRUE(call->status.ok()) << call->status.error_message();
    EXPECT_EQ(call->response.value(), "orphan#2");
  }
  EXPECT_EQ(origin_->fetches("orphan"), 2);
  std::printf("B answered %s after A was killed (lease TTL 500ms)\n",
              absl::FormatDuration(took).c_str());
  sidecars_[0].process.reset();
}

TEST_F(FleetE2eTest, RedisKilledAndRestartedNoGetFailsAndTheTierResumes) {
  // A killed Redis refuses connections at once, so the timeout does not pace the outage phase;
  // 100 ms keeps a busy machine's slow Redis reply from turning a fleet hit into a fallback.
  StartSidecars(2, {"--fleet-timeout=100ms"});
  int key = 0;
  auto get_fresh_on_both = [&](int* fleet_answers) {
    const std::string k = absl::StrCat("r-", key++);
    v1::GetResponse response;
    grpc::Status status = Get(0, k, &response, absl::Seconds(2));
    ASSERT_TRUE(status.ok()) << k << ": " << status.error_message();
    status = Get(1, k, &response, absl::Seconds(2));
    ASSERT_TRUE(status.ok()) << k << ": " << status.error_message();
    if (response.source() == v1::SOURCE_FLEET) ++*fleet_answers;
  };
  int fleet_answers = 0;
  for (int i = 0; i < 20; ++i) get_fresh_on_both(&fleet_answers);
  EXPECT_EQ(fleet_answers, 20);

  redis_.Kill();
  fleet_answers = 0;
  for (int i = 0; i < 50; ++i) get_fresh_on_both(&fleet_answers);
  EXPECT_EQ(fleet_answers, 0);
  EXPECT_GT(Stats(0).fleet_errors(), 0);

  ASSERT_TRUE(redis_.Start()) << redis_.Log();  // the same port
  // The tier comes back by itself: keys loaded on A become fleet hits on B again.
  const absl::Time limit = absl::Now() + absl::Seconds(30);
  fleet_answers = 0;
  while (fleet_answers == 0 && absl::Now() < limit) {
    get_fresh_on_both(&fleet_answers);
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GT(fleet_answers, 0) << "the tier did not resume within 30 s of Redis' restart";
}

// A full Redis (maxmemory reached, no eviction) refuses every write: no entry, lease or
// announcement can be stored. Every Get still succeeds, from the origin, and the errors are
// counted.
TEST_F(FleetE2eTest, AFullRedisFailsNoGet) {
  StartSidecars(2);
  redis_.Cli({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
  redis_.Cli({"CONFIG", "SET", "maxmemory", "1"});  // below what Redis already uses
  for (int i = 0; i < 20; ++i) {
    const std::string k = absl::StrCat("full-", i);
    for (int sidecar : {0, 1}) {
      v1::GetResponse response;
      const grpc::Status status = Get(sidecar, k, &response, absl::Seconds(5));
      ASSERT_TRUE(status.ok()) << k << " on " << sidecar << ": " << status.error_message();
      EXPECT_EQ(response.value(), absl::StrCat(k, "#", sidecar + 1));  // each fetched its own
    }
  }
  EXPECT_GT(Stats(0).fleet_errors(), 0);
  EXPECT_GT(Stats(1).fleet_errors(), 0);
  EXPECT_EQ(Stats(1).fleet_hits(), 0);
}

TEST_F(FleetE2eTest, ARedisThatStopsAnsweringDelaysNoGetPastItsDeadline) {
  StartSidecars(2, {"--fleet-timeout=20ms"});
  redis_.Pause();
  const absl::Time paused = absl::Now();
  int answered = 0;
  for (int i = 0; absl::Now() - paused < absl::Seconds(2); ++i) {
    const std::string k = absl::StrCat("p-", i);
    v1::GetResponse response;
    // The origin answers at once; the deadline leaves room for a busy machine, not for a wait on
    // Redis (which would be as long as the pause).
    const grpc::Status status = Get(i % 2, k, &response, absl::Milliseconds(1000));
    ASSERT_TRUE(status.ok()) << k << ": " << status.error_message();
    ++answered;
  }
  redis_.Resume();
  EXPECT_GT(answered, 10);
  std::printf("%d Gets answered while Redis was stopped for 2 s\n", answered);
}

}  // namespace
}  // namespace flightcache
