// The spec's load semantics over real loopback gRPC: a Sidecar in-process, its origin a TestOrigin.
// Extends server_test.cc (which covers sources, coalescing, detached deadlines, the status table
// row by row) with what needs several calls, timing or shutdown to show: hedging and its budget,
// the concurrency limit and its queue, how errors are shared and cached, Invalidate racing a load,
// origin TTLs, an origin that is down, draining with waiters in flight, and refcounted
// cancellation when clients cancel.
//
// Real time is unavoidable here (the server runs its own timers); every wait is bounded and every
// timing assertion has a wide margin for a noisy 2-core machine.
#include <grpcpp/client_context.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "flightcache/timer_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/grpc_origin.h"
#include "tests/integration/server_test_util.h"

namespace flightcache::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr int kNotServing = 2;

using LoadSemanticsTest = SidecarTest;

// Polls health until it reports `want`; returns the last answer (bounded: about 10 s).
int WaitForHealth(const std::shared_ptr<grpc::Channel>& channel, int want) {
  int last = -1;
  for (int i = 0; i < 2000; ++i) {
    absl::StatusOr<int> health = CheckHealth(channel);
    last = health.ok() ? *health : -1;
    if (last == want) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return last;
}

// Waits for every call (bounded); false if one of them did not finish.
bool WaitAll(std::vector<std::unique_ptr<PendingGet>>& calls,
             absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  for (auto& call : calls) {
    if (!call->Wait(std::max(absl::ZeroDuration(), deadline - absl::Now()))) return false;
  }
  return true;
}

int CountDone(const std::vector<std::unique_ptr<PendingGet>>& calls) {
  int done = 0;
  for (const auto& call : calls) done += call->done.HasBeenNotified() ? 1 : 0;
  return done;
}

// Joins a thread when the scope ends, so a failed ASSERT cannot destroy it while joinable.
class JoinOnExit final {
 public:
  explicit JoinOnExit(std::thread& thread) : thread_(thread) {}
  ~JoinOnExit() {
    if (thread_.joinable()) thread_.join();
  }
  JoinOnExit(const JoinOnExit&) = delete;
  JoinOnExit& operator=(const JoinOnExit&) = delete;

 private:
  std::thread& thread_;
};

// Polls until the origin holds exactly `n` unanswered fetches (a fetch is counted before it is
// parked, so WaitForFetches alone can return a moment early). False after about 10 s.
bool WaitForOriginConcurrent(const TestOrigin& origin, int64_t n) {
  for (int i = 0; i < 5000; ++i) {
    if (origin.concurrent() == n) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return false;
}

// A TCP port on 127.0.0.1 held for the test, so nobody else can take it. kRefusing: bound but not
// listening, so a connection is refused (nothing listens there). kBlackHole: listening but never
// accepting, so the kernel completes the TCP handshake into the backlog and then nothing speaks
// HTTP/2: a gRPC call to it neither fails nor answers (an origin that hangs).
class LoopbackPort final {
 public:
  enum class Kind { kRefusing, kBlackHole };
  explicit LoopbackPort(Kind kind) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    if (kind == Kind::kBlackHole) {
      EXPECT_EQ(listen(fd_, 16), 0);
    }
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~LoopbackPort() { close(fd_); }
  LoopbackPort(const LoopbackPort&) = delete;
  LoopbackPort& operator=(const LoopbackPort&) = delete;

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// --- Hedging -------------------------------------------------------------------------------------

// Attempt 1 hangs, attempt 2 answers at once: the hedge answers the caller, and the primary's
// origin call is cancelled (the origin sees CANCELLED for attempt 1).
TEST_F(LoadSemanticsTest, HedgeAnswersASlowPrimaryAndThePrimaryIsCancelled) {
  origin_->SetScript([](const std::string& key, uint32_t attempt, int64_t nth) {
    OriginBehavior b;
    if (attempt == 1) {
      b.hold = true;
    } else {
      b.value = absl::StrCat(key, "/attempt-", attempt);
    }
    return b;
  });
  ServerConfig config = BaseConfig();
  config.cache.hedge.enabled = true;
  config.cache.hedge.delay = absl::Milliseconds(50);
  config.cache.load_timeout = absl::Seconds(30);  // only the hedge can answer within the deadline
  StartServer(config);

  const absl::Time start = absl::Now();
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response, absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(response.value(), "k/attempt-2");
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);

  ASSERT_TRUE(origin_->WaitForCancellations(1));
  ASSERT_TRUE(origin_->WaitForIdle());
  const std::vector<FetchRecord> records = origin_->records();
  ASSERT_EQ(records.size(), 2u);
  for (const FetchRecord& r : records) {
    if (r.attempt == 1) {
      EXPECT_EQ(r.end, FetchRecord::End::kCancelled);
      EXPECT_EQ(r.code, grpc::StatusCode::CANCELLED);
    } else {
      EXPECT_EQ(r.attempt, 2u);
      EXPECT_EQ(r.end, FetchRecord::End::kAnswered);
    }
  }
  const FlightCacheStats s = sidecar_->stats();
  EXPECT_EQ(s.hedges_sent, 1);
  EXPECT_EQ(s.hedges_won, 1);
  EXPECT_EQ(s.origin_fetches, 2);

  // The hedge's answer is what was cached.
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(response.value(), "k/attempt-2");
}

// Every primary is slow, every hedge fast: without a budget each of the 200 loads would hedge.
// The token bucket (10 to start, +0.05 per primary) allows at most 10 + 0.05 * 200 of them.
TEST_F(LoadSemanticsTest, HedgeBudgetHoldsOver200SlowLoads) {
  constexpr int kLoads = 200;
  constexpr int kWave = 20;
  origin_->SetScript([](const std::string& key, uint32_t attempt, int64_t nth) {
    OriginBehavior b;
    if (attempt == 1) b.latency = absl::Milliseconds(200);
    return b;
  });
  ServerConfig config = BaseConfig();
  config.cache.hedge.enabled = true;
  config.cache.hedge.delay = absl::Milliseconds(10);
  // A free permit for every hedge: the budget, not the limiter, must be what stops them.
  config.cache.max_concurrent_loads = 1000;
  StartServer(config);

  for (int wave = 0; wave < kLoads / kWave; ++wave) {
    std::vector<std::unique_ptr<PendingGet>> calls;
    for (int i = 0; i < kWave; ++i) {
      calls.push_back(StartGet(absl::StrCat("budget-", wave, "-", i), absl::Seconds(20)));
    }
    ASSERT_TRUE(WaitAll(calls));
    for (auto& call : calls) {
      ASSERT_TRUE(call->status.ok()) << call->status.error_message();
    }
  }
  ASSERT_TRUE(origin_->WaitForIdle());
  const FlightCacheStats s = sidecar_->stats();
  EXPECT_EQ(s.loads_started, kLoads);
  EXPECT_LE(s.hedges_sent, 10 + 0.05 * kLoads + 1);
  // The bucket starts full, and the first wave alone has 20 slow primaries: hedging happened.
  EXPECT_GE(s.hedges_sent, 10);
  EXPECT_LE(s.hedges_won, s.hedges_sent);
  EXPECT_EQ(s.origin_fetches, kLoads + s.hedges_sent);
  // A hedge the server cancelled at once (its primary answered first) may never reach the origin.
  int64_t hedges_seen = 0;
  for (const FetchRecord& r : origin_->records()) hedges_seen += r.attempt == 2 ? 1 : 0;
  EXPECT_LE(hedges_seen, s.hedges_sent);
  EXPECT_GE(hedges_seen, 10);
  EXPECT_EQ(origin_->fetches(), kLoads + hedges_seen);
}

// An attempt's error does not decide the load while the other attempt may still answer: the
// hedge fails fast, the slow primary's value is what the caller gets.
TEST_F(LoadSemanticsTest, HedgeErrorWaitsForThePrimary) {
  origin_->SetScript([](const std::string& key, uint32_t attempt, int64_t nth) {
    OriginBehavior b;
    // Values by attempt, not by arrival: on a loaded machine the hedge can reach the origin first.
    if (attempt == 1) {
      b.latency = absl::Milliseconds(300);
      b.value = "from-primary";
    } else {
      b.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "hedge replica down");
    }
    return b;
  });
  ServerConfig config = BaseConfig();
  config.cache.hedge.enabled = true;
  config.cache.hedge.delay = absl::Milliseconds(20);
  StartServer(config);
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.value(), "from-primary");
  const FlightCacheStats s = sidecar_->stats();
  EXPECT_EQ(s.hedges_sent, 1);
  EXPECT_EQ(s.hedges_won, 0);
  EXPECT_EQ(s.loads_succeeded, 1);
  EXPECT_EQ(origin_->cancellations(), 0);
}

// Hedges are never queued behind the concurrency limit: with the only permit held by the primary,
// no hedge is sent, however slow the primary.
TEST_F(LoadSemanticsTest, HedgeNeedsAFreePermit) {
  origin_->SetBehavior("k", {.latency = absl::Milliseconds(300)});
  ServerConfig config = BaseConfig();
  config.cache.hedge.enabled = true;
  config.cache.hedge.delay = absl::Milliseconds(20);
  config.cache.max_concurrent_loads = 1;
  StartServer(config);
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(sidecar_->stats().hedges_sent, 0);
  EXPECT_EQ(origin_->fetches("k"), 1);
}

// When the last waiter of a hedged load leaves, both attempts are cancelled at the origin.
TEST_F(LoadSemanticsTest, LastWaiterLeavingCancelsBothAttempts) {
  origin_->SetDefaultBehavior({.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.hedge.enabled = true;
  config.cache.hedge.delay = absl::Milliseconds(20);
  StartServer(config);
  auto call = StartGet("k", absl::Seconds(30));
  ASSERT_TRUE(origin_->WaitForHeld("k", 2));  // the primary and its hedge
  call->context.TryCancel();
  ASSERT_TRUE(call->Wait(absl::Seconds(10)));
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(origin_->WaitForCancellations(2));
  EXPECT_EQ(origin_->cancellations("k"), 2);
  EXPECT_EQ(origin_->concurrent(), 0);
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.loads_cancelled == 1 && s.loads_inflight == 0; }));
}

// --- Concurrency limit ---------------------------------------------------------------------------

// 100 cold keys at once with a limit of 4: the origin never sees more than 4 fetches at a time,
// the rest wait in the queue, and every call gets its value.
TEST_F(LoadSemanticsTest, OriginInFlightStaysWithinTheLimitForManyColdKeys) {
  constexpr int kLimit = 4;
  constexpr int kKeys = 100;
  origin_->SetDefaultBehavior({.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.max_concurrent_loads = kLimit;
  StartServer(config);

  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < kKeys; ++i) calls.push_back(StartGet(absl::StrCat("cold-", i)));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) {
    return s.loads_inflight == kKeys && s.loads_queued == kKeys - kLimit;
  })) << "inflight="
      << sidecar_->stats().loads_inflight << " queued=" << sidecar_->stats().loads_queued;
  EXPECT_TRUE(WaitForOriginConcurrent(*origin_, kLimit));

  // Answer whatever is held until every call is done; the queue feeds the origin K at a time.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (CountDone(calls) < kKeys && absl::Now() < deadline) {
    origin_->ReleaseAll();
    EXPECT_LE(origin_->concurrent(), kLimit);
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(WaitAll(calls, absl::Seconds(1)));
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(calls[i]->status.ok()) << i << ": " << calls[i]->status.error_message();
    EXPECT_EQ(calls[i]->response.value(), absl::StrCat("cold-", i, "#1"));
  }
  EXPECT_EQ(origin_->peak_concurrent(), kLimit);
  EXPECT_EQ(origin_->fetches(), kKeys);
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.loads_inflight == 0 && s.loads_queued == 0; }));
}

// Limit 2, queue 5, 30 cold keys at once: 2 fetch, 5 wait, the other 23 get RESOURCE_EXHAUSTED at
// once (while the 7 are still held), and after the release every call has returned.
TEST_F(LoadSemanticsTest, QueueOverflowIsResourceExhaustedAndNoCallHangs) {
  constexpr int kLimit = 2;
  constexpr int kQueue = 5;
  constexpr int kKeys = 30;
  origin_->SetDefaultBehavior({.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.max_concurrent_loads = kLimit;
  config.cache.max_queued_loads = kQueue;
  StartServer(config);

  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < kKeys; ++i) {
    calls.push_back(StartGet(absl::StrCat("over-", i), absl::Seconds(30)));
  }
  // The overflow is answered without waiting for any load.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (CountDone(calls) < kKeys - kLimit - kQueue && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_EQ(CountDone(calls), kKeys - kLimit - kQueue);
  int exhausted = 0;
  for (const auto& call : calls) {
    if (!call->done.HasBeenNotified()) continue;
    EXPECT_EQ(call->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(call->status.error_message(), HasSubstr("queue"));
    ++exhausted;
  }
  EXPECT_EQ(exhausted, kKeys - kLimit - kQueue);
  // The two loads with permits may still be on their way to the origin.
  EXPECT_TRUE(WaitForOriginConcurrent(*origin_, kLimit));
  EXPECT_EQ(sidecar_->stats().loads_queued, kQueue);

  const absl::Time release_deadline = absl::Now() + absl::Seconds(30);
  while (CountDone(calls) < kKeys && absl::Now() < release_deadline) {
    origin_->ReleaseAll();
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(WaitAll(calls, absl::Seconds(1))) << "a call hung";
  int ok = 0;
  for (const auto& call : calls) ok += call->status.ok() ? 1 : 0;
  EXPECT_EQ(ok, kLimit + kQueue);
  EXPECT_EQ(origin_->fetches(), kLimit + kQueue);
  EXPECT_LE(origin_->peak_concurrent(), kLimit);
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.loads_inflight == 0 && s.loads_queued == 0; }));
}

// --- Errors --------------------------------------------------------------------------------------

// One failed origin call answers all 20 waiters with the same UNAVAILABLE, and is not cached.
TEST_F(LoadSemanticsTest, OneUnavailableFetchIsSharedByEveryWaiterAndNotCached) {
  constexpr int kWaiters = 20;
  origin_->SetBehavior(
      "k", {.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "backend down"), .hold = true});
  StartServer();
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < kWaiters; ++i) calls.push_back(StartGet("k"));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == kWaiters - 1; }));
  EXPECT_EQ(origin_->Release("k"), 1);
  ASSERT_TRUE(WaitAll(calls));
  for (const auto& call : calls) {
    EXPECT_EQ(call->status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(call->status.error_message(), HasSubstr("backend down"));
  }
  EXPECT_EQ(origin_->fetches("k"), 1);
  EXPECT_EQ(sidecar_->stats().loads_failed, 1);

  // Not cached: the next Get fetches again, and gets the origin's new answer.
  origin_->SetBehavior("k", {});
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(response.value(), "k#2");
  EXPECT_EQ(origin_->fetches("k"), 2);
}

// NOT_FOUND is cached for --negative-ttl: a second Get does not fetch; after the TTL one does.
TEST_F(LoadSemanticsTest, NotFoundIsCachedForTheNegativeTtlThenFetchedAgain) {
  constexpr absl::Duration kNegativeTtl = absl::Seconds(1);
  origin_->SetBehavior("gone", {.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no such")});
  ServerConfig config = BaseConfig();
  config.cache.negative_ttl = kNegativeTtl;
  StartServer(config);

  const absl::Time start = MonotonicClock::Get().Now();
  v1::GetResponse response;
  EXPECT_EQ(Get("gone", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(origin_->fetches("gone"), 1);
  // From now on the origin has the key: only a fetch can tell.
  origin_->SetBehavior("gone", {.value = "back"});
  EXPECT_EQ(Get("gone", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(origin_->fetches("gone"), 1);

  grpc::Status status;
  absl::Time answered;
  for (int i = 0; i < 500; ++i) {  // about 10 s at most
    status = Get("gone", &response);
    answered = MonotonicClock::Get().Now();
    if (status.ok()) break;
    ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(status.ok()) << "the negative entry never expired";
  EXPECT_EQ(response.value(), "back");
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(origin_->fetches("gone"), 2);
  // The negative entry was stored after `start`, so it cannot have expired before start + TTL, less
  // the one tick of the coarse clock the server stamps and checks expiries with.
  EXPECT_GE(answered - start, kNegativeTtl - CoarseClock::Resolution());
  EXPECT_GE(sidecar_->stats().negative_hits, 1);
}

// --- Invalidate during a load --------------------------------------------------------------------

// Load 1 (slow) is in flight when Invalidate runs; load 2 (started by a Get after Invalidate, and
// joined by another) answers first and is cached. When load 1 finally answers, its caller gets
// version 1, but version 2 is what stays cached.
TEST_F(LoadSemanticsTest, OlderLoadFinishingLastDoesNotOverwriteTheNewerValue) {
  origin_->SetScript([](const std::string& key, uint32_t attempt, int64_t nth) {
    OriginBehavior b;
    b.value = absl::StrCat(key, "@v", nth);
    if (nth == 1) {
      b.latency = absl::Seconds(2);
    } else {
      b.hold = true;
    }
    return b;
  });
  StartServer();
  auto before = StartGet("k");
  ASSERT_TRUE(origin_->WaitForFetches("k", 1));
  int64_t removed = -1;
  ASSERT_TRUE(Invalidate({"k"}, &removed).ok());
  auto after = StartGet("k");
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));  // fetch 2: a new load, not a join of load 1
  auto joiner = StartGet("k");
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == 1; }));
  EXPECT_EQ(origin_->Release("k"), 1);
  ASSERT_TRUE(after->Wait());
  ASSERT_TRUE(joiner->Wait());
  ASSERT_TRUE(after->status.ok()) << after->status.error_message();
  ASSERT_TRUE(joiner->status.ok()) << joiner->status.error_message();
  EXPECT_EQ(after->response.value(), "k@v2");
  EXPECT_EQ(after->response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(joiner->response.value(), "k@v2");
  EXPECT_EQ(joiner->response.source(), v1::SOURCE_COALESCED);
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.value(), "k@v2");
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);

  // Now the old load answers: its caller gets its value, the cache keeps the newer one.
  ASSERT_TRUE(before->Wait());
  ASSERT_TRUE(before->status.ok()) << before->status.error_message();
  EXPECT_EQ(before->response.value(), "k@v1");
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.loads_inflight == 0; }));
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.value(), "k@v2");
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(origin_->fetches("k"), 2);
}

// --- TTL from the origin -------------------------------------------------------------------------

// ttl_ms 300: a Get soon after the load hits; once the TTL has passed, a Get fetches again.
TEST_F(LoadSemanticsTest, OriginTtlExpiresTheEntry) {
  constexpr absl::Duration kTtl = absl::Milliseconds(300);
  StartServer();
  // A machine too slow to make the second call within the TTL cannot show the hit: try a few keys.
  bool hit_shown = false;
  std::string key;
  absl::Time start;
  v1::GetResponse response;
  for (int attempt = 0; attempt < 5 && !hit_shown; ++attempt) {
    key = absl::StrCat("ttl-", attempt);
    origin_->SetBehavior(key, {.ttl_ms = absl::ToInt64Milliseconds(kTtl)});
    start = MonotonicClock::Get().Now();
    ASSERT_TRUE(Get(key, &response).ok());
    EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
    EXPECT_LE(response.ttl_remaining_ms(), absl::ToInt64Milliseconds(kTtl));
    ASSERT_TRUE(Get(key, &response).ok());
    if (MonotonicClock::Get().Now() - start < kTtl - absl::Milliseconds(50)) {
      EXPECT_EQ(response.source(), v1::SOURCE_HIT);
      EXPECT_EQ(response.value(), key + "#1");
      EXPECT_EQ(origin_->fetches(key), 1);
      hit_shown = true;
    }
  }
  ASSERT_TRUE(hit_shown) << "never managed two Gets within the TTL";

  grpc::Status status;
  absl::Time answered;
  for (int i = 0; i < 250; ++i) {  // about 5 s at most: far below the default TTL of 60 s
    status = Get(key, &response);
    answered = MonotonicClock::Get().Now();
    ASSERT_TRUE(status.ok()) << status.error_message();
    if (response.source() != v1::SOURCE_HIT) break;
    EXPECT_EQ(response.value(), key + "#1");
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(response.value(), key + "#2");
  EXPECT_EQ(origin_->fetches(key), 2);
  // Stamped after `start` with the server's coarse clock: expired no earlier than one tick short.
  EXPECT_GE(answered - start, kTtl - CoarseClock::Resolution());
}

// --- Deadlines at the flags' limits
// ---------------------------------------------------------------

// --load-timeout at its upper bound (24h) still fetches, and the origin call carries a deadline a
// day ahead. GrpcOrigin itself takes any deadline the core computes: one 3,000,000 hours ahead
// (what --load-timeout=3000000h produced before the flag had a bound) still fetches, with a
// deadline no earlier than the load's. Its wall-clock deadline was computed in std::chrono
// nanoseconds, which overflowed (UBSan: signed integer overflow) into a time in 1734; gRPC 1.51
// takes a negative time point for "no deadline", so the call still went out. It is now computed
// in absl::Time, which saturates.
TEST_F(LoadSemanticsTest, TheLongestLoadTimeoutStillFetches) {
  ServerConfig config = BaseConfig();
  config.cache.load_timeout = absl::Hours(24);
  ASSERT_TRUE(config.Validate().ok()) << config.Validate();
  StartServer(config);
  const absl::Time before = absl::Now();
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.value(), "k#1");
  std::vector<FetchRecord> records = origin_->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_GT(records[0].deadline, before + absl::Hours(23));
  EXPECT_LT(records[0].deadline, absl::Now() + absl::Hours(25));

  ThreadTimerQueue timers;
  absl::StatusOr<std::unique_ptr<GrpcOrigin>> grpc_origin =
      GrpcOrigin::Create(origin_->address(), {.timers = &timers});
  ASSERT_TRUE(grpc_origin.ok()) << grpc_origin.status();
  absl::Notification done;
  absl::StatusOr<FetchResult> result;
  (*grpc_origin)
      ->Fetch({.key = "far", .deadline = MonotonicClock::Get().Now() + absl::Hours(3'000'000)},
              std::stop_token(), [&](absl::StatusOr<FetchResult> r) {
                result = std::move(r);
                done.Notify();
              });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->value, "far#1");
  records = origin_->records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_GT(records[1].deadline, absl::Now() + absl::Hours(24 * 365 * 100))
      << "the origin saw the deadline " << records[1].deadline;
}

// --- Origin down ---------------------------------------------------------------------------------

// grpc:// to a port where nothing listens: UNAVAILABLE naming the origin and its error, long
// before the caller's own deadline.
TEST_F(LoadSemanticsTest, RefusedOriginIsUnavailableWithinTheLoadTimeout) {
  LoopbackPort refusing(LoopbackPort::Kind::kRefusing);
  ServerConfig config = BaseConfig();
  config.origin = "grpc://" + refusing.address();
  config.cache.load_timeout = absl::Milliseconds(500);
  StartServer(config);
  for (const std::string key : {"a", "b", "a"}) {
    const absl::Time start = absl::Now();
    v1::GetResponse response;
    const grpc::Status status = Get(key, &response, absl::Seconds(10));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_LT(took, absl::Seconds(3)) << key;
    EXPECT_THAT(status.error_message(), HasSubstr(refusing.address()));
    // gRPC's own words for a refused connection, passed on.
    EXPECT_THAT(status.error_message(), AnyOf(HasSubstr("connect"), HasSubstr("Connection")));
  }
  EXPECT_EQ(sidecar_->stats().loads_failed, 3);
}

// An origin that accepts the connection and then says nothing: the load's own timeout (500 ms)
// ends it with UNAVAILABLE naming the origin, long before the caller's deadline (10 s).
TEST_F(LoadSemanticsTest, HangingOriginIsUnavailableWithinTheLoadTimeout) {
  LoopbackPort hole(LoopbackPort::Kind::kBlackHole);
  ServerConfig config = BaseConfig();
  config.origin = "grpc://" + hole.address();
  config.cache.load_timeout = absl::Milliseconds(500);
  StartServer(config);
  const absl::Time start = absl::Now();
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response, absl::Seconds(10));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_GE(took, absl::Milliseconds(400));
  EXPECT_LT(took, absl::Seconds(3));
  // Two timers race to end this load, both at --load-timeout: the load's own ("origin X did not
  // answer within --load-timeout=500ms") and the origin call's gRPC deadline ("origin X failed:
  // DEADLINE_EXCEEDED"). Either way the message names the origin.
  EXPECT_THAT(status.error_message(), HasSubstr(hole.address()));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.loads_inflight == 0; }));
}

// The origin goes down mid-test: a fetch it was holding fails with its error, a new fetch fails
// fast with UNAVAILABLE, and what was cached before is still served.
TEST_F(LoadSemanticsTest, OriginStoppedMidTestIsUnavailableWithinTheLoadTimeout) {
  origin_->SetBehavior("held", {.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.load_timeout = absl::Milliseconds(500);
  StartServer(config);
  v1::GetResponse response;
  ASSERT_TRUE(Get("cached", &response).ok());

  auto held = StartGet("held", absl::Seconds(10));
  ASSERT_TRUE(origin_->WaitForHeld("held", 1));
  const std::string url = origin_->url();
  origin_->Stop();
  ASSERT_TRUE(held->Wait(absl::Seconds(10)));
  EXPECT_EQ(held->status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(held->status.error_message(), HasSubstr("test origin stopped"));
  EXPECT_THAT(held->status.error_message(), HasSubstr(url));

  for (const std::string key : {"new-1", "new-2"}) {
    const absl::Time start = absl::Now();
    const grpc::Status status = Get(key, &response, absl::Seconds(10));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_LT(took, absl::Seconds(3)) << key;
    EXPECT_THAT(status.error_message(), HasSubstr(url)) << key;
  }
  // Hits need no origin.
  ASSERT_TRUE(Get("cached", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
}

// The origin goes down and comes back on the same port: the server uses it again within about a
// second. With gRPC's default reconnect backoff (1 s growing 1.6x to 120 s) the origin channel
// would only retry the connection at its next backoff tick and go on failing every load with
// "Connection refused" long after the origin is back (about 15 s after a 30 s outage).
//
// Slow by design: a 10 s outage. With gRPC's default backoff the next reconnect attempt after a
// 10 s outage comes at the earliest 2.6 s later (1 s, x1.6, +-20% jitter), so the 2.5 s bound
// fails without the origin channel's capped backoff.
TEST_F(LoadSemanticsTest, OriginBackAfterAnOutageIsUsedAgainPromptly) {
  ServerConfig config = BaseConfig();
  config.cache.load_timeout = absl::Milliseconds(500);
  StartServer(config);
  v1::GetResponse response;
  ASSERT_TRUE(Get("before", &response).ok());
  const int port = origin_->port();
  origin_->Stop();
  const absl::Time outage_end = absl::Now() + absl::Seconds(10);
  for (int i = 0; absl::Now() < outage_end; ++i) {
    EXPECT_EQ(Get(absl::StrCat("down-", i), &response).error_code(), grpc::StatusCode::UNAVAILABLE);
    absl::SleepFor(absl::Milliseconds(100));
  }
  origin_ = TestOrigin::Start(port);
  const absl::Time back = absl::Now();
  grpc::Status status;
  for (int i = 0; absl::Now() - back < absl::Seconds(30); ++i) {
    status = Get(absl::StrCat("after-", i), &response);
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(absl::Now() - back, absl::Milliseconds(2500));
}

// --- Graceful shutdown with waiters in flight ----------------------------------------------------

// Ten callers wait on a held key when Shutdown() begins in another thread: health turns
// NOT_SERVING, a new Get is turned away with UNAVAILABLE (without reaching the origin), the key is
// released well before the drain timeout, every waiter gets the value, and Shutdown returns
// without waiting out the drain timeout.
TEST_F(LoadSemanticsTest, ShutdownDrainsEveryWaiterOfAHeldKey) {
  constexpr int kWaiters = 10;
  origin_->SetBehavior("k", {.hold = true});
  ServerConfig config = BaseConfig();
  config.drain_timeout = absl::Seconds(20);
  StartServer(config);
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < kWaiters; ++i) calls.push_back(StartGet("k", absl::Seconds(30)));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == kWaiters - 1; }));

  absl::Notification shut_down;
  absl::Time shutdown_returned;
  std::thread shutdown([&] {
    sidecar_->Shutdown();
    shutdown_returned = absl::Now();
    shut_down.Notify();
  });
  JoinOnExit join_shutdown(shutdown);
  EXPECT_EQ(WaitForHealth(channel_, kNotServing), kNotServing);
  v1::GetResponse response;
  for (const std::string key : {"k", "other"}) {
    const grpc::Status late = Get(key, &response);
    EXPECT_EQ(late.error_code(), grpc::StatusCode::UNAVAILABLE) << key;
    EXPECT_THAT(late.error_message(), HasSubstr("draining")) << key;
  }
  EXPECT_EQ(origin_->fetches(), 1);
  EXPECT_FALSE(shut_down.HasBeenNotified()) << "Shutdown did not wait for the calls in flight";

  const absl::Time released = absl::Now();
  EXPECT_EQ(origin_->Release("k"), 1);
  ASSERT_TRUE(WaitAll(calls));
  for (const auto& call : calls) {
    ASSERT_TRUE(call->status.ok()) << call->status.error_message();
    EXPECT_EQ(call->response.value(), "k#1");
  }
  ASSERT_TRUE(shut_down.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "Shutdown waited on although no call was in flight";
  shutdown.join();
  EXPECT_LT(shutdown_returned - released, absl::Seconds(5));
}

// The held key is never released: Shutdown returns after about --drain-timeout, and every waiter
// gets an error rather than hanging.
TEST_F(LoadSemanticsTest, ShutdownWithAKeyNeverReleasedEndsAfterTheDrainTimeout) {
  constexpr int kWaiters = 5;
  constexpr absl::Duration kDrain = absl::Seconds(1);
  origin_->SetBehavior("k", {.hold = true});
  ServerConfig config = BaseConfig();
  config.drain_timeout = kDrain;
  StartServer(config);
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < kWaiters; ++i) calls.push_back(StartGet("k", absl::Seconds(30)));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == kWaiters - 1; }));

  const absl::Time start = absl::Now();
  std::thread shutdown([&] { sidecar_->Shutdown(); });
  JoinOnExit join_shutdown(shutdown);
  ASSERT_TRUE(WaitAll(calls, absl::Seconds(15))) << "a waiter hung";
  const absl::Duration waiters_done = absl::Now() - start;
  shutdown.join();
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, kDrain - absl::Milliseconds(50));
  EXPECT_LT(took, kDrain + absl::Seconds(5));
  EXPECT_GE(waiters_done, kDrain - absl::Milliseconds(50)) << "waiters were cut off early";
  for (const auto& call : calls) {
    EXPECT_FALSE(call->status.ok());
    EXPECT_THAT(call->status.error_code(),
                AnyOf(grpc::StatusCode::CANCELLED, grpc::StatusCode::UNAVAILABLE));
  }
  // The load lost its last waiter: the origin call is cancelled too.
  EXPECT_TRUE(origin_->WaitForCancellations(1));
}

// --- Refcounted cancellation when clients cancel -------------------------------------------------

// Three callers share a held load. Two cancel (ClientContext::TryCancel): they get CANCELLED, the
// load goes on, and the third caller gets the value; the origin sees no cancellation.
TEST_F(LoadSemanticsTest, ClientCancelOfSomeWaitersLeavesTheLoadToTheRest) {
  origin_->SetBehavior("k", {.hold = true});
  StartServer();
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(StartGet("k", absl::Seconds(30)));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == 2; }));
  for (int i = 0; i < 2; ++i) {
    calls[i]->context.TryCancel();
    ASSERT_TRUE(calls[i]->Wait(absl::Seconds(10)));
    EXPECT_EQ(calls[i]->status.error_code(), grpc::StatusCode::CANCELLED);
  }
  // Give the server time to see both cancellations before the load may answer.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(origin_->held("k"), 1);
  EXPECT_EQ(origin_->cancellations(), 0);
  EXPECT_EQ(origin_->Release("k"), 1);
  ASSERT_TRUE(calls[2]->Wait());
  ASSERT_TRUE(calls[2]->status.ok()) << calls[2]->status.error_message();
  EXPECT_EQ(calls[2]->response.value(), "k#1");
  EXPECT_EQ(origin_->cancellations(), 0);
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.loads_succeeded == 1 && s.loads_inflight == 0; }));
  EXPECT_EQ(sidecar_->stats().loads_cancelled, 0);
}

// When the last of the callers cancels, the load is cancelled: the origin sees CANCELLED, nothing
// is cached, and the next Get starts a new load.
TEST_F(LoadSemanticsTest, ClientCancelOfTheLastWaiterCancelsTheOriginCall) {
  origin_->SetBehavior("k", {.hold = true});
  StartServer();
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(StartGet("k", absl::Seconds(30)));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == 2; }));
  for (int i = 0; i < 2; ++i) {
    calls[i]->context.TryCancel();
    ASSERT_TRUE(calls[i]->Wait(absl::Seconds(10)));
  }
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(origin_->cancellations(), 0) << "the load was cancelled while a waiter remained";
  calls[2]->context.TryCancel();
  ASSERT_TRUE(calls[2]->Wait(absl::Seconds(10)));
  EXPECT_EQ(calls[2]->status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(origin_->WaitForCancellations(1));
  EXPECT_EQ(origin_->cancellations("k"), 1);
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.loads_cancelled == 1 && s.loads_inflight == 0; }));

  origin_->SetBehavior("k", {});
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(response.value(), "k#2");
}

// A load waiting in the limiter's queue leaves it when its only client cancels: it never reaches
// the origin, and the queue is empty again.
TEST_F(LoadSemanticsTest, ClientCancelTakesAQueuedLoadOutOfTheQueue) {
  origin_->SetBehavior("blocker", {.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.max_concurrent_loads = 1;
  StartServer(config);
  auto blocker = StartGet("blocker", absl::Seconds(30));
  ASSERT_TRUE(origin_->WaitForHeld("blocker", 1));
  auto queued = StartGet("queued", absl::Seconds(30));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.loads_queued == 1; }));
  queued->context.TryCancel();
  ASSERT_TRUE(queued->Wait(absl::Seconds(10)));
  EXPECT_EQ(queued->status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.loads_queued == 0 && s.loads_cancelled == 1; }));
  EXPECT_EQ(origin_->Release("blocker"), 1);
  ASSERT_TRUE(blocker->Wait());
  EXPECT_TRUE(blocker->status.ok()) << blocker->status.error_message();
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.loads_inflight == 0; }));
  EXPECT_EQ(origin_->fetches("queued"), 0);
}

// A BatchGet whose client cancels leaves every key's load; loads it alone waited on are cancelled
// at the origin, a load another caller still waits on goes on.
TEST_F(LoadSemanticsTest, ClientCancelOfABatchGetLeavesEachKeysLoad) {
  origin_->SetDefaultBehavior({.hold = true});
  StartServer();
  auto batch = StartBatchGet({"x", "y", "shared"}, absl::Seconds(30));
  for (const char* key : {"x", "y", "shared"}) ASSERT_TRUE(origin_->WaitForHeld(key, 1)) << key;
  auto other = StartGet("shared", absl::Seconds(30));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == 1; }));
  batch->context.TryCancel();
  ASSERT_TRUE(batch->Wait(absl::Seconds(10)));
  EXPECT_EQ(batch->status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(origin_->WaitForCancellations(2));
  EXPECT_EQ(origin_->cancellations("x"), 1);
  EXPECT_EQ(origin_->cancellations("y"), 1);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(origin_->cancellations("shared"), 0);
  EXPECT_EQ(origin_->Release("shared"), 1);
  ASSERT_TRUE(other->Wait());
  ASSERT_TRUE(other->status.ok()) << other->status.error_message();
  EXPECT_EQ(other->response.value(), "shared#1");
}

}  // namespace
}  // namespace flightcache::testing
