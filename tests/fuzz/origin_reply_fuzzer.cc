// Fuzz target: origin reply bytes -> what the sidecar's callers get (server/grpc_origin.cc, then
// the core). A raw (ByteBuffer) flightcache.v1.Origin answers each fetch with the input, over
// gRPC's in-process transport to a GrpcOrigin (GrpcOrigin::CreateWithChannel); a FlightCache
// loads from it. Nothing goes on the network.
//
// Input: byte 0 < 128: the origin answers OK with the rest of the input as its reply message;
// else it fails with status code (byte 0 % 16) + 1 and the rest as the message.
//
// Checks, for a Get of a key no earlier input used, then a second Get of it:
// - a reply that parses as a FetchResponse with ttl_ms >= 0 gives its value (or
//   RESOURCE_EXHAUSTED when the value is over --max-value-bytes) with its TTL, and is cached: the
//   second Get is a hit with the same bytes and no second fetch;
// - any other reply is garbage: INTERNAL naming it, counted once per fetch, never cached (the
//   second Get fetches again);
// - a failed fetch is UNAVAILABLE (INTERNAL and RESOURCE_EXHAUSTED from a remote origin too:
//   those codes are reserved for the sidecar's own verdicts), except NOT_FOUND, which is cached
//   negatively; a remote RESOURCE_EXHAUSTED that reads like gRPC's own "larger than max" stays
//   RESOURCE_EXHAUSTED. Only NOT_FOUND is cached.
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "flightcache/flight_cache.h"
#include "flightcache/v1/origin.grpc.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "server/grpc_origin.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

constexpr int64_t kMaxValueBytes = 256;

// Answers every Fetch with the current reply: OK and these bytes, or a failure.
class RawOriginService final : public v1::Origin::WithRawCallbackMethod_Fetch<v1::Origin::Service> {
 public:
  void Set(grpc::Status status, std::string bytes) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
    bytes_ = std::move(bytes);
  }
  int64_t fetches() const { return fetches_.load(); }

  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* /*request*/,
                                  grpc::ByteBuffer* response) override {
    fetches_.fetch_add(1);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::MutexLock lock(&mu_);
    if (status_.ok()) {
      grpc::Slice slice(bytes_);
      *response = grpc::ByteBuffer(&slice, 1);
    }
    reactor->Finish(status_);
    return reactor;
  }

 private:
  absl::Mutex mu_;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::string bytes_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> fetches_{0};
};

// Built once: a server and channel per input would cost milliseconds.
struct Harness {
  Harness() : timers(MonotonicClock::Get().Now()) {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    FUZZ_CHECK(server != nullptr) << "in-process origin did not start";
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(1 << 20);
    origin = GrpcOrigin::CreateWithChannel(
        "in-process", server->InProcessChannel(args),
        {.timers = &timers, .on_garbage_reply = [this] { garbage_replies.fetch_add(1); }});
    FlightCacheOptions options;
    options.max_value_bytes = kMaxValueBytes;
    // The clock stands still (so no TTL runs out between the two Gets), and GrpcOrigin turns the
    // load's deadline into a wall-clock one: 24 h keeps it ahead of real time for a long campaign.
    options.load_timeout = absl::Hours(24);
    cache = std::make_unique<FlightCache>(options, *origin, timers);
  }

  RawOriginService service;
  testing::FakeTimerQueue timers;
  std::atomic<int64_t> garbage_replies{0};
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<GrpcOrigin> origin;
  std::unique_ptr<FlightCache> cache;
  int64_t next_key = 0;
};

Harness& TheHarness() {
  static Harness* const harness = new Harness();  // never destroyed: gRPC may still be running
  return *harness;
}

GetResult GetNow(FlightCache& cache, const std::string& key) {
  absl::Notification done;
  std::optional<GetResult> result;
  cache.Get(key, [&](GetResult r) {
    result = std::move(r);
    done.Notify();
  });
  FUZZ_CHECK(done.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "Get('" << key << "') not answered within 30 s";
  return *std::move(result);
}

// What the caller must get for a reply that is OK with these bytes.
void CheckOkReply(Harness& h, const std::string& key, const std::string& bytes,
                  int64_t garbage_before, int64_t fetches_before) {
  const GetResult first = GetNow(*h.cache, key);
  v1::FetchResponse parsed;
  if (!parsed.ParseFromString(bytes) || parsed.ttl_ms() < 0) {
    FUZZ_CHECK(absl::IsInternal(first.status) &&
               absl::StrContains(first.status.message(), "garbage"))
        << "garbage reply answered " << first.status;
    FUZZ_CHECK(h.garbage_replies.load() == garbage_before + 1) << "garbage reply not counted";
    const GetResult second = GetNow(*h.cache, key);
    FUZZ_CHECK(absl::IsInternal(second.status)) << "second Get: " << second.status;
    FUZZ_CHECK(h.service.fetches() == fetches_before + 2) << "a garbage reply was cached";
    return;
  }
  FUZZ_CHECK(h.garbage_replies.load() == garbage_before) << "a valid reply counted as garbage";
  if (static_cast<int64_t>(parsed.value().size()) > kMaxValueBytes) {
    FUZZ_CHECK(absl::IsResourceExhausted(first.status)) << first.status;
    return;
  }
  FUZZ_CHECK(first.status.ok()) << "valid reply answered " << first.status;
  FUZZ_CHECK(first.value.view() == parsed.value()) << "the value is not the reply's";
  if (parsed.ttl_ms() > 0) {
    FUZZ_CHECK(first.ttl_remaining == absl::Milliseconds(parsed.ttl_ms()))
        << "ttl " << first.ttl_remaining << " for ttl_ms=" << parsed.ttl_ms();
  }
  const GetResult second = GetNow(*h.cache, key);
  FUZZ_CHECK(second.status.ok() && second.source == Source::kHit &&
             second.value.view() == parsed.value())
      << "a valid reply was not cached: " << second.status;
  FUZZ_CHECK(h.service.fetches() == fetches_before + 1);
}

void CheckFailedFetch(Harness& h, const std::string& key, const grpc::Status& sent) {
  const GetResult first = GetNow(*h.cache, key);
  const grpc::StatusCode code = sent.error_code();
  if (code == grpc::StatusCode::NOT_FOUND) {
    FUZZ_CHECK(absl::IsNotFound(first.status)) << first.status;
    const GetResult second = GetNow(*h.cache, key);
    FUZZ_CHECK(absl::IsNotFound(second.status) && second.source == Source::kHit)
        << "NOT_FOUND not cached: " << second.status;
    return;
  }
  if (code == grpc::StatusCode::RESOURCE_EXHAUSTED &&
      absl::StrContains(sent.error_message(), "larger than max")) {
    FUZZ_CHECK(absl::IsResourceExhausted(first.status)) << first.status;
  } else {
    FUZZ_CHECK(absl::IsUnavailable(first.status))
        << "origin code " << code << " answered " << first.status;
  }
  const int64_t fetches = h.service.fetches();
  GetNow(*h.cache, key);
  FUZZ_CHECK(h.service.fetches() == fetches + 1) << "a failed fetch was cached";
}

}  // namespace
}  // namespace flightcache

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  google::protobuf::SetLogHandler(nullptr);  // parse failures are the point here
  flightcache::TheHarness();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flightcache;
  fuzz::FuzzInput in(data, size);
  const uint8_t kind = in.Byte();
  const std::string rest = in.Rest();
  Harness& h = TheHarness();
  const std::string key = absl::StrCat("key-", h.next_key++);
  if (kind < 128) {
    h.service.Set(grpc::Status::OK, rest);
    CheckOkReply(h, key, rest, h.garbage_replies.load(), h.service.fetches());
  } else {
    const grpc::Status sent(static_cast<grpc::StatusCode>(kind % 16 + 1), rest);
    h.service.Set(sent, "");
    CheckFailedFetch(h, key, sent);
  }
  return 0;
}
