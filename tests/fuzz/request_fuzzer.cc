// Fuzz target: raw request bytes -> the Cache service's answer (server/cache_service.cc), over
// gRPC's in-process transport: the service, the FlightCache and a gRPC server with no listening
// port, called through a generic (ByteBuffer) stub, so the bytes reach the server exactly as a
// client sent them and nothing goes on the network.
//
// Input: byte 0 picks the method (Get, BatchGet, Invalidate, Stats, or a method that does not
// exist), byte 1 the call's deadline (10 s, or 1 ms to exercise the deadline and cancellation
// paths), the rest is the request message.
//
// The origin answers by key prefix: "nf" NOT_FOUND, "err" UNAVAILABLE, "big" a value over
// --max-value-bytes, "slow" after 2 ms (a sim::SimOrigin on a real timer), anything else at once
// with "v:" + key.
//
// Checks (the spec's status table): the call always completes; a request that does not parse
// as its message gets INVALID_ARGUMENT with a message; one that parses gets what a Get of each
// key would return —
// INVALID_ARGUMENT for an empty or too long key or a bad key count, NOT_FOUND, UNAVAILABLE,
// RESOURCE_EXHAUSTED by prefix, else OK with the origin's value for that key (never another
// key's) — or DEADLINE_EXCEEDED when the deadline was 1 ms; an OK answer parses as the method's
// response message, BatchGet's results are in request order, Invalidate removes at most as many
// entries as keys, and Stats' gauges are in range (bytes within capacity).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "flightcache/flight_cache.h"
#include "flightcache/sim/origin_model.h"
#include "flightcache/sim/sim_origin.h"
#include "flightcache/timer_queue.h"
#include "flightcache/v1/cache.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "server/cache_service.h"
#include "server/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace flightcache {
namespace {

constexpr int64_t kMaxKeyBytes = 64;
constexpr int64_t kMaxBatchKeys = 16;
constexpr int64_t kMaxValueBytes = 1024;
constexpr int64_t kCapacityBytes = 1 << 20;

std::string ValueFor(absl::string_view key) { return absl::StrCat("v:", key); }

class FuzzOrigin final : public Origin {
 public:
  explicit FuzzOrigin(TimerQueue& timers)
      : slow_({.latency = sim::LatencyDistribution::Fixed(absl::Milliseconds(2)),
               .value_bytes = 0,
               .version_slots = 1024},
              timers) {}

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    const std::string& key = request.key;
    if (absl::StartsWith(key, "nf")) {
      done(absl::NotFoundError("fuzz origin: no such key"));
    } else if (absl::StartsWith(key, "err")) {
      done(absl::UnavailableError("fuzz origin: failing"));
    } else if (absl::StartsWith(key, "big")) {
      done(FetchResult{.value = std::string(kMaxValueBytes + 1, 'b')});
    } else if (absl::StartsWith(key, "slow")) {
      slow_.Fetch(request, std::move(cancel), std::move(done));
    } else {
      done(FetchResult{.value = ValueFor(key)});
    }
  }
  std::string Describe() const override { return "fuzz://"; }

 private:
  sim::SimOrigin slow_;
};

// The sidecar's pieces, as Sidecar::Start wires them, with an in-process channel instead of a
// listening port. Built once: a server per input would cost milliseconds.
struct Harness {
  Harness() {
    config.cache.max_key_bytes = kMaxKeyBytes;
    config.cache.max_value_bytes = kMaxValueBytes;
    config.cache.store.capacity_bytes = kCapacityBytes;
    config.cache.load_timeout = absl::Seconds(1);
    config.max_batch_keys = kMaxBatchKeys;
    cache = std::make_unique<FlightCache>(config.cache, origin, timers);
    service = std::make_unique<CacheService>(
        *cache,
        CacheServiceOptions{.max_batch_keys = config.max_batch_keys,
                            .max_key_bytes = config.cache.max_key_bytes,
                            .deadline_timers = &timers},
        /*metrics=*/nullptr);
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    builder.SetMaxReceiveMessageSize(config.MaxRequestBytes());
    server = builder.BuildAndStart();
    FUZZ_CHECK(server != nullptr) << "in-process server did not start";
    stub = std::make_unique<grpc::GenericStub>(server->InProcessChannel(grpc::ChannelArguments()));
  }

  ServerConfig config;
  ThreadTimerQueue timers;
  FuzzOrigin origin{timers};
  std::unique_ptr<FlightCache> cache;
  std::unique_ptr<CacheService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc::GenericStub> stub;
};

Harness& TheHarness() {
  static Harness* const harness = new Harness();  // never destroyed: gRPC may still be running
  return *harness;
}

struct Answer {
  grpc::Status status;
  std::string body;
};

Answer Call(const std::string& method, const std::string& request, bool short_deadline) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + (short_deadline
                                                               ? std::chrono::milliseconds(1)
                                                               : std::chrono::milliseconds(10000)));
  grpc::Slice slice(request);
  const grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer reply;
  absl::Notification done;
  grpc::Status status;
  TheHarness().stub->UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &reply,
                               [&](grpc::Status s) {
                                 status = std::move(s);
                                 done.Notify();
                               });
  FUZZ_CHECK(done.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << method << ": no answer within 30 s";
  Answer answer{.status = status};
  if (status.ok()) {
    std::vector<grpc::Slice> slices;
    FUZZ_CHECK(reply.Dump(&slices).ok());
    for (const grpc::Slice& s : slices) answer.body.append(s.begin(), s.end());
  }
  return answer;
}

// What a Get of `key` alone must answer (ignoring deadlines).
grpc::StatusCode ExpectedCode(const std::string& key) {
  if (key.empty() || static_cast<int64_t>(key.size()) > kMaxKeyBytes) {
    return grpc::StatusCode::INVALID_ARGUMENT;
  }
  if (absl::StartsWith(key, "nf")) return grpc::StatusCode::NOT_FOUND;
  if (absl::StartsWith(key, "err")) return grpc::StatusCode::UNAVAILABLE;
  if (absl::StartsWith(key, "big")) return grpc::StatusCode::RESOURCE_EXHAUSTED;
  return grpc::StatusCode::OK;
}

void CheckValue(const std::string& key, const std::string& value) {
  if (absl::StartsWith(key, "slow")) {
    const std::optional<sim::SimValueInfo> info = sim::DecodeSimValue(value);
    FUZZ_CHECK(info.has_value() && info->key == key) << "key '" << key << "' got another value";
  } else {
    FUZZ_CHECK(value == ValueFor(key)) << "key '" << key << "' got '" << value << "'";
  }
}

void CheckCode(grpc::StatusCode got, grpc::StatusCode want, bool short_deadline,
               const std::string& what) {
  if (short_deadline && got == grpc::StatusCode::DEADLINE_EXCEEDED) return;
  FUZZ_CHECK(got == want) << what << ": code " << got << ", want " << want;
}

void CheckGet(const v1::GetRequest& request, const Answer& answer, bool short_deadline) {
  CheckCode(answer.status.error_code(), ExpectedCode(request.key()), short_deadline, "Get");
  if (!answer.status.ok()) return;
  v1::GetResponse response;
  FUZZ_CHECK(response.ParseFromString(answer.body)) << "Get: reply does not parse";
  CheckValue(request.key(), response.value());
  FUZZ_CHECK(response.source() != v1::SOURCE_UNSPECIFIED);
  FUZZ_CHECK(response.ttl_remaining_ms() >= 0);
}

void CheckBatchGet(const v1::BatchGetRequest& request, const Answer& answer, bool short_deadline) {
  const int n = request.keys_size();
  const bool bad_count = n == 0 || n > kMaxBatchKeys;
  CheckCode(answer.status.error_code(),
            bad_count ? grpc::StatusCode::INVALID_ARGUMENT : grpc::StatusCode::OK, short_deadline,
            "BatchGet");
  if (!answer.status.ok()) return;
  v1::BatchGetResponse response;
  FUZZ_CHECK(response.ParseFromString(answer.body)) << "BatchGet: reply does not parse";
  FUZZ_CHECK(response.results_size() == n) << response.results_size() << " results for " << n;
  for (int i = 0; i < n; ++i) {
    const v1::KeyResult& r = response.results(i);
    FUZZ_CHECK(r.key() == request.keys(i)) << "result " << i << " is for another key";
    CheckCode(static_cast<grpc::StatusCode>(r.code()), ExpectedCode(r.key()), short_deadline,
              "BatchGet key");
    if (r.code() == grpc::StatusCode::OK) {
      CheckValue(r.key(), r.value());
    } else {
      FUZZ_CHECK(!r.message().empty()) << "BatchGet key " << i << " failed without a message";
    }
  }
}

void CheckInvalidate(const v1::InvalidateRequest& request, const Answer& answer,
                     bool short_deadline) {
  bool valid = request.keys_size() <= kMaxBatchKeys;
  for (const std::string& key : request.keys()) {
    valid = valid && !key.empty() && static_cast<int64_t>(key.size()) <= kMaxKeyBytes;
  }
  CheckCode(answer.status.error_code(),
            valid ? grpc::StatusCode::OK : grpc::StatusCode::INVALID_ARGUMENT, short_deadline,
            "Invalidate");
  if (!answer.status.ok()) return;
  v1::InvalidateResponse response;
  FUZZ_CHECK(response.ParseFromString(answer.body)) << "Invalidate: reply does not parse";
  FUZZ_CHECK(response.removed() >= 0 && response.removed() <= request.keys_size())
      << "removed " << response.removed() << " of " << request.keys_size() << " keys";
}

void CheckStats(const Answer& answer, bool short_deadline) {
  CheckCode(answer.status.error_code(), grpc::StatusCode::OK, short_deadline, "Stats");
  if (!answer.status.ok()) return;
  v1::StatsResponse s;
  FUZZ_CHECK(s.ParseFromString(answer.body)) << "Stats: reply does not parse";
  FUZZ_CHECK(s.bytes() >= 0 && s.bytes() <= kCapacityBytes) << "bytes " << s.bytes();
  FUZZ_CHECK(s.entries() >= 0 && s.loads_inflight() >= 0 && s.loads_queued() >= 0);
}

// Checks the answer to a request that parsed as its method's message.
template <typename Request, typename Check>
void CallAndCheck(const std::string& method, const std::string& bytes, bool short_deadline,
                  Check check) {
  Request request;
  const bool parses = request.ParseFromString(bytes);
  const Answer answer = Call(method, bytes, short_deadline);
  if (!parses) {
    CheckCode(answer.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT, short_deadline,
              method + " of a request that does not parse");
    FUZZ_CHECK(answer.status.ok() || !answer.status.error_message().empty())
        << method << ": refused without a message";
    return;
  }
  check(request, answer, short_deadline);
}

}  // namespace
}  // namespace flightcache

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Protobuf logs every string field with invalid UTF-8 it refuses; the fuzzer sends many.
  google::protobuf::SetLogHandler(nullptr);
  flightcache::TheHarness();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flightcache;
  fuzz::FuzzInput in(data, size);
  const int method = in.Pick(5);
  const bool short_deadline = (in.Byte() & 1) != 0;
  const std::string bytes = in.Rest();
  switch (method) {
    case 0:
      CallAndCheck<v1::GetRequest>("/flightcache.v1.Cache/Get", bytes, short_deadline, CheckGet);
      break;
    case 1:
      CallAndCheck<v1::BatchGetRequest>("/flightcache.v1.Cache/BatchGet", bytes, short_deadline,
                                        CheckBatchGet);
      break;
    case 2:
      CallAndCheck<v1::InvalidateRequest>("/flightcache.v1.Cache/Invalidate", bytes, short_deadline,
                                          CheckInvalidate);
      break;
    case 3:
      CallAndCheck<v1::StatsRequest>(
          "/flightcache.v1.Cache/Stats", bytes, short_deadline,
          [](const v1::StatsRequest&, const Answer& a, bool d) { CheckStats(a, d); });
      break;
    default: {
      const Answer answer = Call("/flightcache.v1.Cache/NoSuchMethod", bytes, short_deadline);
      CheckCode(answer.status.error_code(), grpc::StatusCode::UNIMPLEMENTED, short_deadline,
                "unknown method");
    }
  }
  return 0;
}
