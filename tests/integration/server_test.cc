// flightcache-server over real loopback gRPC: a Sidecar in-process, its origin a TestOrigin.
// Covers the Cache service (sources, coalescing, detached deadlines, refcounted cancellation,
// BatchGet, Invalidate, Stats), the spec's status table, health, drain and metrics.
#include <arpa/inet.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/memory_trimmer.h"
#include "tests/integration/server_test_util.h"

namespace flightcache::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kServing = 1;
constexpr int kNotServing = 2;

using ServerTest = SidecarTest;

TEST_F(ServerTest, FirstGetLoadsThenHits) {
  StartServer();
  v1::GetResponse first;
  ASSERT_TRUE(Get("k", &first).ok());
  EXPECT_EQ(first.value(), "k#1");
  EXPECT_EQ(first.source(), v1::SOURCE_LOADED);
  // The default TTL (60s) applies when the origin says ttl_ms 0.
  EXPECT_GT(first.ttl_remaining_ms(), 59'000);
  EXPECT_LE(first.ttl_remaining_ms(), 60'000);

  v1::GetResponse second;
  ASSERT_TRUE(Get("k", &second).ok());
  EXPECT_EQ(second.value(), "k#1");
  EXPECT_EQ(second.source(), v1::SOURCE_HIT);
  EXPECT_LE(second.ttl_remaining_ms(), first.ttl_remaining_ms());
  EXPECT_EQ(origin_->fetches("k"), 1);
}

TEST_F(ServerTest, OriginTtlBecomesTtlRemaining) {
  origin_->SetBehavior("short", {.ttl_ms = 1500});
  StartServer();
  v1::GetResponse response;
  ASSERT_TRUE(Get("short", &response).ok());
  EXPECT_GT(response.ttl_remaining_ms(), 0);
  EXPECT_LE(response.ttl_remaining_ms(), 1500);
}

TEST_F(ServerTest, SecondCallerJoinsTheLoadAsCoalesced) {
  origin_->SetBehavior("k", {.hold = true});
  StartServer();
  auto a = StartGet("k");
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  auto b = StartGet("k");
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == 1; }));
  EXPECT_EQ(origin_->Release("k"), 1);
  ASSERT_TRUE(a->Wait());
  ASSERT_TRUE(b->Wait());
  ASSERT_TRUE(a->status.ok()) << a->status.error_message();
  ASSERT_TRUE(b->status.ok()) << b->status.error_message();
  EXPECT_EQ(a->response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(b->response.source(), v1::SOURCE_COALESCED);
  EXPECT_EQ(a->response.value(), "k#1");
  EXPECT_EQ(b->response.value(), "k#1");
  EXPECT_EQ(origin_->fetches("k"), 1);
}

TEST_F(ServerTest, HerdOf500ColdGetsMakesOneOriginFetch) {
  constexpr int kHerd = 500;
  origin_->SetBehavior("cold", {.hold = true});
  StartServer();
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int i = 0; i < kHerd; ++i) calls.push_back(StartGet("cold", absl::Seconds(60)));
  ASSERT_TRUE(origin_->WaitForHeld("cold", 1));
  ASSERT_TRUE(WaitForStats(
      [](const FlightCacheStats& s) { return s.requests == kHerd && s.coalesced == kHerd - 1; },
      absl::Seconds(60)))
      << "requests=" << sidecar_->stats().requests << " coalesced=" << sidecar_->stats().coalesced;
  origin_->Release("cold");
  std::map<int, int> sources;
  for (auto& call : calls) {
    ASSERT_TRUE(call->Wait());
    ASSERT_TRUE(call->status.ok()) << call->status.error_message();
    EXPECT_EQ(call->response.value(), "cold#1");
    ++sources[call->response.source()];
  }
  EXPECT_EQ(sources[v1::SOURCE_LOADED], 1);
  EXPECT_EQ(sources[v1::SOURCE_COALESCED], kHerd - 1);
  EXPECT_EQ(origin_->fetches("cold"), 1);
  EXPECT_EQ(origin_->cancellations(), 0);
}

// A caller with a short deadline starts a slow load; a caller with a long deadline joins it. The
// first gets DEADLINE_EXCEEDED, the load goes on (the origin sees no cancellation), the second
// gets the value. Two calls sent back to back normally reach the server in order; if the machine
// is so slow that the second arrives first or only after the first gave up, try again.
TEST_F(ServerTest, LoadIsDetachedFromTheDeadlineOfTheCallerThatStartedIt) {
  StartServer();
  bool shown = false;
  for (int attempt = 0; attempt < 5 && !shown; ++attempt) {
    const std::string key = absl::StrCat("detached-", attempt);
    origin_->SetBehavior(key, {.latency = absl::Milliseconds(300)});
    auto impatient = StartGet(key, absl::Milliseconds(20));
    auto patient = StartGet(key, absl::Seconds(2));
    ASSERT_TRUE(impatient->Wait());
    ASSERT_TRUE(patient->Wait());
    EXPECT_EQ(impatient->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    ASSERT_TRUE(patient->status.ok()) << patient->status.error_message();
    EXPECT_EQ(patient->response.value(), key + "#1");
    shown = patient->response.source() == v1::SOURCE_COALESCED && origin_->fetches(key) == 1 &&
            origin_->cancellations(key) == 0;
  }
  EXPECT_TRUE(shown) << "never saw the 20 ms caller start the load and the 2 s caller join it";
}

TEST_F(ServerTest, LoadIsCancelledWhenItsLastWaiterLeaves) {
  origin_->SetBehavior("k", {.hold = true});
  StartServer();
  const int64_t cancelled_before = sidecar_->stats().loads_cancelled;
  std::vector<std::unique_ptr<PendingGet>> calls;
  for (int ms : {200, 300, 400}) calls.push_back(StartGet("k", absl::Milliseconds(ms)));
  for (auto& call : calls) {
    ASSERT_TRUE(call->Wait());
    EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  // The three callers shared one load, and it was cancelled at the origin when the last left.
  ASSERT_TRUE(origin_->WaitForCancellations(1));
  EXPECT_EQ(origin_->fetches("k"), 1);
  EXPECT_EQ(origin_->cancellations("k"), 1);
  ASSERT_TRUE(WaitForStats([&](const FlightCacheStats& s) {
    return s.loads_cancelled == cancelled_before + 1 && s.loads_inflight == 0;
  }));
  v1::StatsResponse stats;
  ASSERT_TRUE(Stats(&stats).ok());
  EXPECT_EQ(stats.loads_cancelled(), cancelled_before + 1);

  // Nothing was cached: the next Get starts a new load.
  origin_->SetBehavior("k", {});
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(response.value(), "k#2");
  EXPECT_EQ(origin_->fetches("k"), 2);
}

TEST_F(ServerTest, AbandonedLoadFinishesAndFillsTheCacheWithFinishPolicy) {
  origin_->SetBehavior("k", {.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.abandoned_loads = AbandonPolicy::kFinish;
  StartServer(config);
  auto call = StartGet("k", absl::Milliseconds(200));
  ASSERT_TRUE(call->Wait());
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  EXPECT_EQ(origin_->Release("k"), 1);  // still held: the load was not cancelled
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.loads_succeeded == 1; }));
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(response.value(), "k#1");
  EXPECT_EQ(origin_->cancellations(), 0);
}

// The count of a metric without labels in the exposition text (e.g. a histogram's _count), or -1.
int64_t MetricValue(const std::string& text, const std::string& name) {
  const std::string line_start = "\n" + name + " ";
  const size_t at = text.find(line_start);
  if (at == std::string::npos) return -1;
  return std::atoll(text.c_str() + at + line_start.size());
}

// A caller's deadline is a timer on the server's timer thread: once it has fired, both timer
// histograms have an observation.
TEST_F(ServerTest, TheTimerThreadReportsLatenessAndCallbackDurationAsMetrics) {
  origin_->SetBehavior("k", {.hold = true});
  StartServer();
  const std::string before = sidecar_->metrics().ExpositionText();
  EXPECT_EQ(MetricValue(before, "flightcache_timer_lateness_seconds_count"), 0) << before;
  EXPECT_EQ(MetricValue(before, "flightcache_timer_callback_seconds_count"), 0) << before;
  auto call = StartGet("k", absl::Milliseconds(100));
  ASSERT_TRUE(call->Wait());
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The client may see its own deadline first; the server's timer reports after its callback.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  std::string text;
  do {
    text = sidecar_->metrics().ExpositionText();
    if (MetricValue(text, "flightcache_timer_callback_seconds_count") >= 1) break;
    absl::SleepFor(absl::Milliseconds(2));
  } while (absl::Now() < give_up);
  EXPECT_GE(MetricValue(text, "flightcache_timer_lateness_seconds_count"), 1) << text;
  EXPECT_GE(MetricValue(text, "flightcache_timer_callback_seconds_count"), 1) << text;
  origin_->Release("k");
}

TEST_F(ServerTest, OriginCallCarriesTheLoadTimeoutAsItsDeadline) {
  ServerConfig config = BaseConfig();
  config.cache.load_timeout = absl::Seconds(7);
  StartServer(config);
  const absl::Time before = absl::Now();
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response, absl::Milliseconds(5000)).ok());
  const std::vector<FetchRecord> records = origin_->records();
  ASSERT_EQ(records.size(), 1u);
  // Not the caller's 5 s deadline: the load's own 7 s.
  EXPECT_GT(records[0].deadline, before + absl::Seconds(6));
  EXPECT_LT(records[0].deadline, absl::Now() + absl::Seconds(8));
  EXPECT_EQ(records[0].attempt, 1u);
}

TEST_F(ServerTest, BatchGetAnswersInRequestOrderWithPerKeyCodes) {
  origin_->SetBehavior("missing", {.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no")});
  origin_->SetBehavior("broken",
                       {.status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "boom")});
  origin_->SetBehavior("a", {.latency = absl::Milliseconds(50)});
  StartServer();
  const std::vector<std::string> keys = {"a", "b", "a", "", "missing", "broken", "a"};
  v1::BatchGetResponse response;
  ASSERT_TRUE(BatchGet(keys, &response).ok());
  ASSERT_EQ(response.results_size(), static_cast<int>(keys.size()));
  const std::vector<grpc::StatusCode> codes = {
      grpc::StatusCode::OK,        grpc::StatusCode::OK,
      grpc::StatusCode::OK,        grpc::StatusCode::INVALID_ARGUMENT,
      grpc::StatusCode::NOT_FOUND, grpc::StatusCode::UNAVAILABLE,
      grpc::StatusCode::OK};
  for (size_t i = 0; i < keys.size(); ++i) {
    const v1::KeyResult& r = response.results(static_cast<int>(i));
    EXPECT_EQ(r.key(), keys[i]) << i;
    EXPECT_EQ(r.code(), static_cast<int>(codes[i])) << i << ": " << r.message();
    if (codes[i] == grpc::StatusCode::OK) {
      EXPECT_EQ(r.value(), keys[i] + "#1") << i;
    }
  }
  EXPECT_THAT(response.results(5).message(), HasSubstr("boom"));
  // The duplicates shared one load: one started it, the others joined it.
  EXPECT_EQ(origin_->fetches("a"), 1);
  int loaded = 0;
  for (int i : {0, 2, 6}) loaded += response.results(i).source() == v1::SOURCE_LOADED;
  EXPECT_EQ(loaded, 1);
  for (int i : {2, 6}) {
    EXPECT_NE(response.results(i).source(), v1::SOURCE_UNSPECIFIED);
  }
}

TEST_F(ServerTest, BatchGetLoadsMissingKeysInParallel) {
  for (const char* key : {"x", "y", "z"}) origin_->SetBehavior(key, {.hold = true});
  StartServer();
  auto call = StartBatchGet({"x", "y", "z"});
  for (const char* key : {"x", "y", "z"}) ASSERT_TRUE(origin_->WaitForHeld(key, 1)) << key;
  EXPECT_EQ(origin_->concurrent(), 3);
  origin_->ReleaseAll();
  ASSERT_TRUE(call->Wait());
  ASSERT_TRUE(call->status.ok());
  ASSERT_EQ(call->response.results_size(), 3);
  EXPECT_EQ(call->response.results(1).value(), "y#1");
}

TEST_F(ServerTest, BatchGetRejectsNoKeysAndTooManyKeys) {
  ServerConfig config = BaseConfig();
  config.max_batch_keys = 4;
  StartServer(config);
  v1::BatchGetResponse response;
  EXPECT_EQ(BatchGet({}, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status too_many = BatchGet({"a", "b", "c", "d", "e"}, &response);
  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_many.error_message(), HasSubstr("--max-batch-keys"));
  EXPECT_TRUE(BatchGet({"a", "b", "c", "d"}, &response).ok());
  EXPECT_EQ(response.results_size(), 4);
}

TEST_F(ServerTest, BatchGetOfTheLargestLegalRequestIsAccepted) {
  ServerConfig config = BaseConfig();
  config.origin = "sim://?latency_ms=0&jitter_ms=0&value_bytes=16";
  config.max_batch_keys = 2000;
  config.cache.max_key_bytes = 4096;  // 2000 x 4 KiB = 8 MiB: over gRPC's default 4 MiB limit
  StartServer(config);
  std::vector<std::string> keys;
  for (int i = 0; i < 2000; ++i) {
    std::string key = absl::StrCat(i, "-");
    key.resize(4096, 'k');
    keys.push_back(std::move(key));
  }
  // The reply echoes every key: this client must accept a large response too.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto stub = v1::Cache::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", sidecar_->port()), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(60));
  v1::BatchGetRequest request;
  for (const std::string& key : keys) request.add_keys(key);
  v1::BatchGetResponse response;
  const grpc::Status status = stub->BatchGet(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 2000);
  EXPECT_EQ(response.results(1999).code(), 0) << response.results(1999).message();
  EXPECT_EQ(response.results(1999).key(), keys[1999]);
}

TEST_F(ServerTest, InvalidateMakesTheNextGetLoadAgain) {
  StartServer();
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.value(), "k#1");
  int64_t removed = -1;
  ASSERT_TRUE(Invalidate({"k", "never-seen"}, &removed).ok());
  EXPECT_EQ(removed, 1);
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(response.value(), "k#2");
  ASSERT_TRUE(Invalidate({}, &removed).ok());
  EXPECT_EQ(removed, 0);
}

// A load in flight when Invalidate runs still answers its callers, but is not stored, and a Get
// after Invalidate starts a new load instead of joining it.
TEST_F(ServerTest, InvalidateDetachesTheLoadInFlight) {
  origin_->SetBehavior("k", {.hold = true});
  StartServer();
  auto before = StartGet("k");
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  int64_t removed = -1;
  ASSERT_TRUE(Invalidate({"k"}, &removed).ok());
  EXPECT_EQ(removed, 0);
  auto after = StartGet("k");
  ASSERT_TRUE(origin_->WaitForHeld("k", 2));  // a second load, not a join
  EXPECT_EQ(origin_->Release("k"), 2);
  ASSERT_TRUE(before->Wait());
  ASSERT_TRUE(after->Wait());
  ASSERT_TRUE(before->status.ok());
  ASSERT_TRUE(after->status.ok());
  EXPECT_EQ(before->response.value(), "k#1");
  EXPECT_EQ(after->response.value(), "k#2");
  EXPECT_EQ(after->response.source(), v1::SOURCE_LOADED);
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(response.value(), "k#2");
}

TEST_F(ServerTest, InvalidateRejectsBadKeys) {
  ServerConfig config = BaseConfig();
  config.cache.max_key_bytes = 8;
  config.max_batch_keys = 2;
  StartServer(config);
  int64_t removed = 0;
  EXPECT_EQ(Invalidate({""}, &removed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Invalidate({"123456789"}, &removed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Invalidate({"a", "b", "c"}, &removed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Invalidate({"12345678"}, &removed).ok());
}

TEST_F(ServerTest, StatsRpcReportsTheCoreCounters) {
  origin_->SetBehavior("missing", {.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no")});
  StartServer();
  v1::GetResponse response;
  ASSERT_TRUE(Get("a", &response).ok());
  ASSERT_TRUE(Get("a", &response).ok());
  EXPECT_EQ(Get("missing", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get("missing", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::StatsResponse stats;
  ASSERT_TRUE(Stats(&stats).ok());
  const FlightCacheStats s = sidecar_->stats();
  EXPECT_EQ(stats.requests(), 4);
  EXPECT_EQ(stats.hits(), 1);
  EXPECT_EQ(stats.negative_hits(), 1);
  EXPECT_EQ(stats.misses(), 2);
  EXPECT_EQ(stats.loads_started(), 2);
  EXPECT_EQ(stats.loads_succeeded(), 2);
  EXPECT_EQ(stats.origin_fetches(), 2);
  EXPECT_EQ(stats.entries(), s.entries);
  EXPECT_EQ(stats.bytes(), s.bytes);
  EXPECT_EQ(stats.entries(), 2);
  EXPECT_GT(stats.bytes(), 0);
}

// The spec's status table, row by row.

TEST_F(ServerTest, EmptyOrOverlongKeyIsInvalidArgument) {
  ServerConfig config = BaseConfig();
  config.cache.max_key_bytes = 16;
  StartServer(config);
  v1::GetResponse response;
  EXPECT_EQ(Get("", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const grpc::Status too_long = Get(std::string(17, 'k'), &response);
  EXPECT_EQ(too_long.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_long.error_message(), HasSubstr("--max-key-bytes"));
  EXPECT_TRUE(Get(std::string(16, 'k'), &response).ok());
  EXPECT_EQ(origin_->fetches(), 1);
}

// Bytes that are not the method's request message (sent raw, through a generic stub): every
// method answers INVALID_ARGUMENT naming the message it wanted, never UNIMPLEMENTED (which says
// the method does not exist), and nothing reaches the origin.
TEST_F(ServerTest, ARequestThatIsNotProtobufIsInvalidArgumentWithAMessage) {
  ServerConfig config = BaseConfig();
  config.metrics_listen = "127.0.0.1:0";
  StartServer(config);
  // Field 1 (a string) claiming a length far past the end; a key that is not UTF-8 (proto3
  // strings must be); a tag with wire type 7, which does not exist.
  const std::string truncated("\x0a\xff\xff\xff\xff\x0f", 6);
  const std::string not_utf8("\x0a\x01\xff", 3);
  const std::string bad_wire_type("\x0f", 1);
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"Get", truncated},       {"Get", not_utf8},        {"Get", bad_wire_type},
      {"BatchGet", truncated},  {"BatchGet", not_utf8},   {"Invalidate", truncated},
      {"Invalidate", not_utf8}, {"Stats", bad_wire_type},
  };
  for (const auto& [method, bytes] : calls) {
    const grpc::Status status =
        RawUnaryCall(channel_, absl::StrCat("/flightcache.v1.Cache/", method), bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << status.error_message();
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("is not a valid flightcache.v1.", method, "Request")))
        << method;
  }
  EXPECT_EQ(origin_->fetches(), 0);

  // The same path with well-formed bytes (GetRequest{key: "k"}) is an ordinary Get, and its
  // reply parses as a GetResponse.
  std::string reply;
  ASSERT_TRUE(RawUnaryCall(channel_, "/flightcache.v1.Cache/Get", "\x0a\x01k", &reply).ok());
  v1::GetResponse response;
  ASSERT_TRUE(response.ParseFromString(reply));
  EXPECT_EQ(response.value(), "k#1");
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  // A method the server does not have is still UNIMPLEMENTED.
  EXPECT_EQ(RawUnaryCall(channel_, "/flightcache.v1.Cache/Put", "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  absl::StatusOr<std::string> body = ScrapeMetrics(sidecar_->metrics_port());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body,
              HasSubstr("flightcache_requests_total{code=\"INVALID_ARGUMENT\",method=\"Get\"} 3"));
}

// A Get that sends its headers and no request message, then half-closes (`cancel` false) or
// cancels (`cancel` true); returns how the call ended. Every wait is bounded.
grpc::Status CallGetWithoutAMessage(const std::shared_ptr<grpc::Channel>& channel, bool cancel) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, "/flightcache.v1.Cache/Get", &queue);
  grpc::Status status;
  auto step = [&queue, &status](intptr_t tag) {
    void* got = nullptr;
    bool ok = false;
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(20);
    if (queue.AsyncNext(&got, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT ||
        got != reinterpret_cast<void*>(tag)) {
      status = grpc::Status(grpc::StatusCode::UNKNOWN, "test: no completion within 20 s");
    }
  };
  call->StartCall(reinterpret_cast<void*>(1));
  step(1);
  if (cancel) {
    context.TryCancel();
  } else {
    call->WritesDone(reinterpret_cast<void*>(2));
    step(2);
  }
  grpc::Status finished;
  call->Finish(&finished, reinterpret_cast<void*>(3));
  step(3);
  queue.Shutdown();
  void* ignored = nullptr;
  bool ok = false;
  while (queue.Next(&ignored, &ok)) {
  }
  return status.ok() ? finished : status;
}

// The sum of every series of `metric` in a /metrics body whose labels contain `label`.
int64_t MetricSum(const std::string& body, const std::string& metric, const std::string& label) {
  int64_t sum = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::StartsWith(line, absl::StrCat(metric, "{")) || !absl::StrContains(line, label)) {
      continue;
    }
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) {
      sum += static_cast<int64_t>(value);
    }
  }
  return sum;
}

// Calls whose client gives up within a millisecond or two often end before their request
// message reaches the server. They are not bad requests (they were INVALID_ARGUMENT once, an
// eighth of such calls under load): they answer as they ended, count as unread, and every Get
// that was read is counted once by the cache.
TEST_F(ServerTest, CallsWhoseClientLeftBeforeTheRequestArrivedAreNotBadRequests) {
  ServerConfig config = BaseConfig();
  config.metrics_listen = "127.0.0.1:0";
  StartServer(config);
  constexpr int kCalls = 2000;
  std::vector<std::unique_ptr<PendingGet>> calls;
  calls.reserve(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(StartGet(absl::StrCat("key-", i % 200), absl::Microseconds(100 * (i % 20))));
  }
  for (auto& call : calls) ASSERT_TRUE(call->Wait()) << "a call with a 2 ms deadline never ended";
  // And, whatever the timing, calls cancelled after their headers and before their message.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(CallGetWithoutAMessage(channel_, /*cancel=*/true).error_code(),
              grpc::StatusCode::CANCELLED);
  }
  // Many calls never leave the client in time; of those that reached the server, every one that
  // was read is a cache request. The server may still be finishing calls the clients gave up on.
  int64_t received = 0, unread = 0, cache_requests = -1;
  std::string body;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (received - unread != cache_requests) {
    ASSERT_LT(absl::Now(), give_up)
        << "Get RPCs " << received << " - unread " << unread
        << " never matched the cache's requests " << cache_requests << ":\n"
        << body;
    absl::SleepFor(absl::Milliseconds(20));
    absl::StatusOr<std::string> scraped = ScrapeMetrics(sidecar_->metrics_port());
    ASSERT_TRUE(scraped.ok()) << scraped.status();
    body = *std::move(scraped);
    received = MetricSum(body, "flightcache_requests_total", "method=\"Get\"");
    unread = MetricSum(body, "flightcache_requests_unread_total", "method=\"Get\"");
    v1::StatsResponse stats;
    ASSERT_TRUE(Stats(&stats).ok());
    cache_requests = stats.requests();
  }
  EXPECT_THAT(body, Not(HasSubstr("code=\"INVALID_ARGUMENT\"")));
  EXPECT_GT(unread, 0) << "no call reached the server without its message: nothing was shown";
  RecordProperty("unread", static_cast<int>(unread));
}

// A call that carries no request message from a client that is still there (a gRPC client
// never does this; a hand-made HTTP/2 client can) cannot be told from one whose client left
// just now: it is CANCELLED with a message that says both, and nothing reaches the cache.
TEST_F(ServerTest, ACallWithoutARequestMessageIsCancelledWithAMessage) {
  StartServer();
  const grpc::Status status = CallGetWithoutAMessage(channel_, /*cancel=*/false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("no flightcache.v1.GetRequest arrived"));
  EXPECT_EQ(origin_->fetches(), 0);
  v1::StatsResponse stats;
  ASSERT_TRUE(Stats(&stats).ok());
  EXPECT_EQ(stats.requests(), 0);
}

TEST_F(ServerTest, NotFoundIsServedFromTheNegativeCache) {
  origin_->SetBehavior("gone", {.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no such")});
  StartServer();
  v1::GetResponse response;
  EXPECT_EQ(Get("gone", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get("gone", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(origin_->fetches("gone"), 1);
  EXPECT_EQ(sidecar_->stats().negative_hits, 1);
}

TEST_F(ServerTest, OriginErrorIsUnavailableNamingItAndNotCached) {
  origin_->SetBehavior(
      "k", {.status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "database on fire")});
  StartServer();
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("database on fire"));
  EXPECT_THAT(status.error_message(), HasSubstr(origin_->url()));
  EXPECT_EQ(Get("k", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(origin_->fetches("k"), 2);
}

TEST_F(ServerTest, OriginInternalCancelledOrExhaustedIsUnavailable) {
  origin_->SetBehavior("internal", {.status = grpc::Status(grpc::StatusCode::INTERNAL, "oops")});
  origin_->SetBehavior("cancelled",
                       {.status = grpc::Status(grpc::StatusCode::CANCELLED, "gave up")});
  origin_->SetBehavior("overloaded",
                       {.status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too busy")});
  StartServer();
  v1::GetResponse response;
  const grpc::Status internal = Get("internal", &response);
  EXPECT_EQ(internal.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(internal.error_message(), HasSubstr("oops"));
  const grpc::Status cancelled = Get("cancelled", &response);
  EXPECT_EQ(cancelled.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(cancelled.error_message(), HasSubstr("gave up"));
  // The origin's own RESOURCE_EXHAUSTED is a failed fetch, not an oversized value.
  const grpc::Status overloaded = Get("overloaded", &response);
  EXPECT_EQ(overloaded.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(overloaded.error_message(), HasSubstr("too busy"));
}

TEST_F(ServerTest, UnreachableOriginIsUnavailable) {
  const int port = origin_->port();
  origin_->Stop();
  ServerConfig config = BaseConfig();
  config.origin = absl::StrCat("grpc://127.0.0.1:", port);
  StartServer(config);
  v1::GetResponse response;
  EXPECT_EQ(Get("k", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, LoadTimeoutIsUnavailableAndCancelsTheOriginCall) {
  origin_->SetBehavior("k", {.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.load_timeout = absl::Milliseconds(300);
  StartServer(config);
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response, absl::Seconds(10));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), AnyOf(HasSubstr("timed out"), HasSubstr("load-timeout")));
  EXPECT_TRUE(origin_->WaitForCancellations(1));
}

TEST_F(ServerTest, ValueOverMaxValueBytesIsResourceExhausted) {
  origin_->SetBehavior("big", {.value = std::string(2000, 'v')});
  origin_->SetBehavior("fits", {.value = std::string(1024, 'v')});
  ServerConfig config = BaseConfig();
  config.cache.max_value_bytes = 1024;
  StartServer(config);
  v1::GetResponse response;
  EXPECT_EQ(Get("big", &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(Get("fits", &response).ok());
  EXPECT_EQ(response.value().size(), 1024u);
}

// A value so large that the origin channel's receive limit (--max-value-bytes + 1 MiB) stops it
// in the transport: still RESOURCE_EXHAUSTED, not a transport error.
TEST_F(ServerTest, ValueOverTheChannelLimitIsResourceExhausted) {
  origin_->SetBehavior("huge", {.value = std::string((1 << 20) + 4096, 'v')});
  ServerConfig config = BaseConfig();
  config.cache.max_value_bytes = 1024;
  StartServer(config);
  v1::GetResponse response;
  const grpc::Status status = Get("huge", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max-value-bytes"));
}

TEST_F(ServerTest, FullLoadQueueIsResourceExhausted) {
  origin_->SetBehavior("slow", {.hold = true});
  ServerConfig config = BaseConfig();
  config.cache.max_concurrent_loads = 1;
  config.cache.max_queued_loads = 0;
  StartServer(config);
  auto holder = StartGet("slow");
  ASSERT_TRUE(origin_->WaitForHeld("slow", 1));
  v1::GetResponse response;
  EXPECT_EQ(Get("other", &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  origin_->ReleaseAll();
  ASSERT_TRUE(holder->Wait());
  EXPECT_TRUE(holder->status.ok());
  EXPECT_TRUE(Get("other", &response).ok());
}

TEST_F(ServerTest, GarbageFromTheOriginIsInternal) {
  origin_->SetBehavior("k", {.ttl_ms = -5});
  StartServer();
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(status.error_message(), HasSubstr("ttl_ms"));
  EXPECT_EQ(Get("k", &response).error_code(), grpc::StatusCode::INTERNAL);  // not cached
}

TEST_F(ServerTest, HealthTurnsNotServingAndCallsGetUnavailableWhileDraining) {
  StartServer();
  absl::StatusOr<int> health = CheckHealth(channel_);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, kServing);
  health = CheckHealth(channel_, "flightcache.v1.Cache");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, kServing);

  sidecar_->BeginDrain();
  health = CheckHealth(channel_);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, kNotServing);
  v1::GetResponse response;
  EXPECT_EQ(Get("k", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::BatchGetResponse batch;
  EXPECT_EQ(BatchGet({"k"}, &batch).error_code(), grpc::StatusCode::UNAVAILABLE);
  int64_t removed = 0;
  EXPECT_EQ(Invalidate({"k"}, &removed).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(origin_->fetches(), 0);
}

TEST_F(ServerTest, ReflectionListsTheServices) {
  StartServer();
  absl::StatusOr<std::string> services = ReflectionListServices(channel_);
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, HasSubstr("flightcache.v1.Cache"));
  EXPECT_THAT(*services, HasSubstr("grpc.health.v1.Health"));
}

TEST_F(ServerTest, ShutdownLetsACallInFlightFinish) {
  origin_->SetBehavior("k", {.hold = true});
  ServerConfig config = BaseConfig();
  config.drain_timeout = absl::Seconds(20);
  StartServer(config);
  auto call = StartGet("k", absl::Seconds(30));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  std::thread shutdown([&] { sidecar_->Shutdown(); });
  // While the call is in flight, the server drains: NOT_SERVING, new calls turned away.
  absl::StatusOr<int> health;
  for (int i = 0; i < 1000; ++i) {
    health = CheckHealth(channel_);
    if (health.ok() && *health == kNotServing) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, kNotServing);
  origin_->Release("k");
  ASSERT_TRUE(call->Wait());
  EXPECT_TRUE(call->status.ok()) << call->status.error_message();
  EXPECT_EQ(call->response.value(), "k#1");
  shutdown.join();
}

TEST_F(ServerTest, ShutdownCancelsCallsLeftAtTheDrainTimeout) {
  origin_->SetBehavior("k", {.hold = true});
  ServerConfig config = BaseConfig();
  config.drain_timeout = absl::Milliseconds(200);
  StartServer(config);
  auto call = StartGet("k", absl::Seconds(30));
  ASSERT_TRUE(origin_->WaitForHeld("k", 1));
  sidecar_->Shutdown();
  ASSERT_TRUE(call->Wait());
  EXPECT_FALSE(call->status.ok());
  // Its load lost its last waiter: the origin call is cancelled too.
  EXPECT_TRUE(origin_->WaitForCancellations(1));
}

// This host's first IPv4 address that is not loopback (the sidecar's pod IP, in a cluster), if
// it has one.
std::optional<std::string> NonLoopbackIpv4() {
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (const ifaddrs* i = interfaces; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const auto* address = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if ((ntohl(address->sin_addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN] = {};
    if (inet_ntop(AF_INET, &address->sin_addr, text, sizeof(text)) != nullptr) found = text;
  }
  freeifaddrs(interfaces);
  return found;
}

// Without --admin-token-file, Invalidate is served to loopback peers only; other calls to all.
TEST_F(ServerTest, WithoutATokenInvalidateIsForLoopbackPeersOnly) {
  const std::optional<std::string> pod_ip = NonLoopbackIpv4();
  if (!pod_ip) GTEST_SKIP() << "this host has no IPv4 address but loopback";
  ServerConfig config = BaseConfig();
  config.listen = "0.0.0.0:0";
  StartServer(config);  // stub_ connects over 127.0.0.1
  int64_t removed = 0;
  const grpc::Status local = Invalidate({"k"}, &removed);
  EXPECT_TRUE(local.ok()) << local.error_message();

  // The same calls from the host's own address: a peer that is not loopback.
  channel_ = grpc::CreateChannel(absl::StrCat(*pod_ip, ":", sidecar_->port()),
                                 grpc::InsecureChannelCredentials());
  stub_ = v1::Cache::NewStub(channel_);
  const grpc::Status denied = Invalidate({"k"}, &removed);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << denied.error_message();
  EXPECT_THAT(denied.error_message(), HasSubstr(absl::StrCat("ipv4:", *pod_ip, ":")));
  EXPECT_THAT(denied.error_message(), HasSubstr("--admin-token-file"));
  v1::GetResponse value;
  const grpc::Status got = Get("k", &value);
  EXPECT_TRUE(got.ok()) << got.error_message();
  v1::StatsResponse stats;
  ASSERT_TRUE(Stats(&stats).ok());
  EXPECT_EQ(stats.permission_denied(), 1);
}

TEST_F(ServerTest, MetricsCountRequestsAndServeThemOverHttp) {
  ServerConfig config = BaseConfig();
  config.metrics_listen = "127.0.0.1:0";
  StartServer(config);
  ASSERT_GT(sidecar_->metrics_port(), 0);
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(Get("", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::BatchGetResponse batch;
  ASSERT_TRUE(BatchGet({"k", ""}, &batch).ok());

  absl::StatusOr<std::string> body = ScrapeMetrics(sidecar_->metrics_port());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("flightcache_requests_total{code=\"OK\",method=\"Get\"} 2"));
  EXPECT_THAT(*body,
              HasSubstr("flightcache_requests_total{code=\"INVALID_ARGUMENT\",method=\"Get\"} 1"));
  EXPECT_THAT(*body, HasSubstr("flightcache_requests_total{code=\"OK\",method=\"BatchGet\"} 1"));
  EXPECT_THAT(*body, HasSubstr("flightcache_batch_keys_total{code=\"INVALID_ARGUMENT\"} 1"));
  EXPECT_THAT(*body, HasSubstr("flightcache_cache_hits_total 2"));
  EXPECT_THAT(*body, HasSubstr("flightcache_cache_misses_total 1"));
  EXPECT_THAT(*body, HasSubstr("flightcache_cache_entries 1"));
  EXPECT_THAT(*body, HasSubstr("flightcache_loads_inflight 0"));
  EXPECT_THAT(*body, HasSubstr(absl::StrCat("flightcache_load_concurrency_limit ",
                                            config.cache.max_concurrent_loads, "\n")));
  EXPECT_THAT(*body, HasSubstr(absl::StrCat("flightcache_loads_queue_capacity ",
                                            config.cache.max_queued_loads, "\n")));
  // This process's RSS: at least the megabytes gRPC alone needs, at most what the machine has.
  const size_t rss_at = body->find("\nprocess_resident_memory_bytes ");
  ASSERT_NE(rss_at, std::string::npos) << *body;
  double rss = 0;
  const size_t value_at = body->find(' ', rss_at + 1) + 1;
  ASSERT_TRUE(
      absl::SimpleAtod(body->substr(value_at, body->find('\n', value_at) - value_at), &rss));
  EXPECT_GT(rss, 1 << 20);
  EXPECT_LT(rss, static_cast<double>(ResidentBytes()) * 2);
  EXPECT_THAT(*body, HasSubstr("flightcache_origin_fetches_total 1"));
  EXPECT_THAT(*body,
              HasSubstr("flightcache_origin_fetch_duration_seconds_count{attempt=\"primary\","
                        "result=\"ok\"} 1"));
  EXPECT_THAT(*body, HasSubstr("flightcache_hedges_total{outcome=\"won\"} 0"));
}

// Idle HTTP clients on /metrics (connected, sending nothing) must not stop a scrape: civetweb
// gives each connection a worker thread until its request arrives or times out.
class MetricsUnderIdleConnectionsTest : public SidecarTest {
 protected:
  void SetUp() override {
    SidecarTest::SetUp();
    ServerConfig config = BaseConfig();
    config.metrics_listen = "127.0.0.1:0";
    StartServer(config);
    ASSERT_GT(sidecar_->metrics_port(), 0);
  }
  void TearDown() override {
    for (int fd : idle_) close(fd);
    SidecarTest::TearDown();
  }

  // Opens `idle` connections that send nothing, then scrapes; the scrape must succeed within
  // `bound`. Prints how long it took.
  void ScrapeBesideIdleConnections(int idle, absl::Duration bound) {
    for (int i = 0; i < idle; ++i) {
      const int fd = ConnectLoopback(sidecar_->metrics_port());
      ASSERT_GE(fd, 0);
      idle_.push_back(fd);
    }
    absl::SleepFor(absl::Milliseconds(100));  // let the server hand them to its workers
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> body = ScrapeMetrics(sidecar_->metrics_port(), bound);
    ASSERT_TRUE(body.ok()) << body.status();
    EXPECT_THAT(*body, HasSubstr("flightcache_cache_hits_total"));
    std::printf("scrape beside %d idle connections: %s\n", idle,
                absl::FormatDuration(absl::Now() - start).c_str());
  }

  std::vector<int> idle_;
};

TEST_F(MetricsUnderIdleConnectionsTest, AScrapeSucceedsWhileSeveralClientsSitIdle) {
  ScrapeBesideIdleConnections(8, absl::Seconds(3));
}

// More idle clients than worker threads: each is cut after the request timeout (5 s), so a
// scrape waits at most that long instead of civetweb's default 30 s.
TEST_F(MetricsUnderIdleConnectionsTest, IdleClientsBeyondTheWorkersDelayAScrapeByAtMostTheTimeout) {
  ScrapeBesideIdleConnections(40, absl::Seconds(9));
}

TEST_F(ServerTest, StartFailsWhenTheAddressIsTaken) {
  StartServer();
  ServerConfig config = BaseConfig();
  config.listen = absl::StrCat("127.0.0.1:", sidecar_->port());
  absl::StatusOr<std::unique_ptr<Sidecar>> second = Sidecar::Start(config);
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--listen"));
}

TEST_F(ServerTest, SimulatedOriginIsTheDefaultAndServesItsKeys) {
  ServerConfig config = BaseConfig();
  config.origin = "sim://?latency_ms=1&jitter_ms=0&value_bytes=64";
  StartServer(config);
  v1::GetResponse response;
  ASSERT_TRUE(Get("user:42", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(response.value().size(), 64u);
  EXPECT_THAT(response.value(), HasSubstr("user:42"));
  EXPECT_EQ(ServerConfig().origin, std::string(kDefaultOrigin));
  EXPECT_TRUE(absl::StartsWith(ServerConfig().origin, "sim://"));
}

}  // namespace
}  // namespace flightcache::testing
