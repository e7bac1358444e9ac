#include "server/grpc_origin.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "flightcache/v1/origin.grpc.pb.h"
#include "server/status_mapping.h"

namespace flightcache {

// One call in flight. Shared by the completion callback (which owns it until the call is done)
// and, weakly, by the stop callback; the ClientContext lives as long as either may touch it.
struct GrpcOrigin::Call {
  // Runs on the thread that requests stop. The call is locked for the duration of TryCancel: a
  // completion that runs meanwhile (on another thread, or inline inside TryCancel) then cannot
  // destroy the ClientContext under it.
  struct OnCancel {
    std::weak_ptr<Call> call;
    void operator()() const {
      std::shared_ptr<Call> c = call.lock();
      if (c == nullptr) return;
      c->cancelled_by_us.store(true, std::memory_order_release);
      c->context.TryCancel();
    }
  };

  grpc::ClientContext context;
  grpc::ByteBuffer request;                      // a serialised FetchRequest
  grpc::ByteBuffer response;                     // the reply's bytes, parsed by ToFetchResult
  FetchCallback done;                            // touched only by the completion callback
  absl::Time deadline = absl::InfiniteFuture();  // the load's, in MonotonicClock time
  // Release/acquire: the completion that sees CANCELLED also sees that we asked for it.
  std::atomic<bool> cancelled_by_us{false};
  // Emplaced before the call starts; destroyed with the Call.
  std::optional<std::stop_callback<OnCancel>> on_cancel;
};

namespace {

// gRPC's name for Origin/Fetch, as the generic stub wants it.
const std::string& FetchMethod() {
  static const std::string* const method =
      new std::string(absl::StrCat("/", v1::Origin::service_full_name(), "/Fetch"));
  return *method;
}

grpc::ByteBuffer Serialize(const v1::FetchRequest& request) {
  grpc::Slice slice(request.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

// The reply of a call that ended OK, parsed; garbage is INTERNAL naming what is wrong with it.
absl::StatusOr<FetchResult> ParseReply(const std::string& origin, grpc::ByteBuffer& reply) {
  if (!reply.Valid()) {
    return absl::InternalError(
        absl::StrCat("origin ", origin, " returned garbage: an OK status without a reply"));
  }
  const size_t bytes = reply.Length();
  v1::FetchResponse response;
  grpc::ProtoBufferReader reader(&reply);
  if (!reader.status().ok() || !response.ParseFromZeroCopyStream(&reader)) {
    return absl::InternalError(
        absl::StrCat("origin ", origin, " returned garbage: its reply (", bytes,
                     " bytes) does not parse as a flightcache.v1.FetchResponse"));
  }
  if (response.ttl_ms() < 0) {
    return absl::InternalError(absl::StrCat(
        "origin ", origin, " returned garbage: ttl_ms=", response.ttl_ms(), " (must be >= 0)"));
  }
  return FetchResult{std::move(*response.mutable_value()), absl::Milliseconds(response.ttl_ms())};
}

// Whether gRPC ended the call on our side, before the origin can know: we cancelled it, or its
// deadline (the load's timeout) passed. The origin learns of either only when its server reads the
// RST_STREAM. A DEADLINE_EXCEEDED that comes well before our deadline is the origin's own answer.
// The 5 ms allow for gRPC's millisecond timestamps, its wall-clock deadline converted back to its
// own clock, and our clock being read separately; a remote answer inside that window only waits
// the grace before its permit is reused, which costs nothing but a little concurrency.
bool EndedHereFirst(absl::Time deadline, const grpc::Status& status, bool cancelled_by_us) {
  switch (status.error_code()) {
    case grpc::StatusCode::CANCELLED:
      return cancelled_by_us;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return MonotonicClock::Get().Now() >= deadline - absl::Milliseconds(5);
    default:
      return false;
  }
}

// The origin's answer as the core wants it (see grpc_origin.h for the policy).
absl::StatusOr<FetchResult> ToFetchResult(const std::string& origin, const grpc::Status& status,
                                          bool cancelled_by_us, grpc::ByteBuffer& reply) {
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::CANCELLED && cancelled_by_us) {
      return absl::CancelledError("origin call cancelled: the load was abandoned");
    }
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
        absl::StrContains(status.error_message(), "larger than max")) {
      return absl::ResourceExhaustedError(
          absl::StrCat("origin value exceeds --max-value-bytes (", status.error_message(), ")"));
    }
    const absl::Status remote = FromGrpcStatus(status);
    // INTERNAL and RESOURCE_EXHAUSTED are reserved by the Origin contract (our bug or garbage; a
    // value over --max-value-bytes). From a remote origin they are just a failed fetch.
    if (absl::IsInternal(remote) || absl::IsResourceExhausted(remote)) {
      return absl::UnavailableError(
          absl::StrCat(absl::StatusCodeToString(remote.code()), ": ", remote.message()));
    }
    return remote;
  }
  return ParseReply(origin, reply);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcOrigin>> GrpcOrigin::Create(const std::string& target,
                                                               const GrpcOriginOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("grpc origin target is empty");
  if (options.max_response_bytes < 1) {
    return absl::InvalidArgumentError("grpc origin max_response_bytes must be positive");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_response_bytes);
  // gRPC's default reconnect backoff grows to 120 s: after an origin outage every miss would keep
  // failing long after the origin is back. Retrying at most once a second costs one TCP connect
  // a second while the origin is down, and brings it back within about a second. (Not
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is also the connect timeout, which must stay long.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (options.tls_credentials != nullptr && !options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      target,
      options.tls_credentials != nullptr ? options.tls_credentials
                                         : grpc::InsecureChannelCredentials(),
      args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create a channel to ", target));
  }
  return CreateWithChannel(target, std::move(channel), options);
}

std::unique_ptr<GrpcOrigin> GrpcOrigin::CreateWithChannel(std::string name,
                                                          std::shared_ptr<grpc::Channel> channel,
                                                          const GrpcOriginOptions& options) {
  return std::unique_ptr<GrpcOrigin>(new GrpcOrigin(std::move(name), std::move(channel), options));
}

GrpcOrigin::GrpcOrigin(std::string target, std::shared_ptr<grpc::Channel> channel,
                       const GrpcOriginOptions& options)
    : scheme_(options.tls_credentials != nullptr ? "grpcs://" : "grpc://"),
      target_(std::move(target)),
      timers_(options.timers),
      cancelled_fetch_grace_(options.cancelled_fetch_grace),
      on_garbage_reply_(options.on_garbage_reply),
      channel_(std::move(channel)),
      stub_(std::make_unique<grpc::GenericStub>(channel_)) {}

void GrpcOrigin::Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) {
  if (cancel.stop_requested()) {
    done(absl::CancelledError("origin call cancelled before it started"));
    return;
  }
  auto call = std::make_shared<Call>();
  call->done = std::move(done);
  v1::FetchRequest fetch;
  fetch.set_key(request.key);
  fetch.set_attempt(request.attempt);
  call->request = Serialize(fetch);
  call->deadline = request.deadline;
  if (request.deadline != absl::InfiniteFuture()) {
    // The deadline is in MonotonicClock (monotonic) time; gRPC wants wall-clock time. Computed in
    // absl::Time, which saturates: std::chrono's now() + nanoseconds overflows for a deadline
    // beyond 2262 (signed overflow; gRPC then took the wrapped, negative time for no deadline).
    const absl::Duration left = request.deadline - MonotonicClock::Get().Now();
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + left));
  }
  // Registered before the call starts: a TryCancel before the start is remembered by the
  // ClientContext and applied when the call begins.
  call->on_cancel.emplace(std::move(cancel), Call::OnCancel{call});
  const grpc::ByteBuffer* req = &call->request;
  grpc::ByteBuffer* resp = &call->response;
  grpc::ClientContext* ctx = &call->context;
  stub_->UnaryCall(
      ctx, FetchMethod(), grpc::StubOptions(), req, resp,
      [this, call = std::move(call)](const grpc::Status& status) {
        const bool cancelled_by_us = call->cancelled_by_us.load(std::memory_order_acquire);
        absl::StatusOr<FetchResult> result =
            ToFetchResult(Describe(), status, cancelled_by_us, call->response);
        if (status.ok() && absl::IsInternal(result.status()) && on_garbage_reply_) {
          on_garbage_reply_();
        }
        FetchCallback done = std::move(call->done);
        if (EndedHereFirst(call->deadline, status, cancelled_by_us) && timers_ != nullptr &&
            cancelled_fetch_grace_ > absl::ZeroDuration()) {
          // Still in flight at the origin until its server has seen the RST_STREAM (see the
          // header). The timer owns `done` and touches nothing of this GrpcOrigin.
          timers_->RunAfter(cancelled_fetch_grace_,
                            [done = std::move(done), result = std::move(result)]() mutable {
                              done(std::move(result));
                            });
          return;
        }
        done(std::move(result));
      });
}

}  // namespace flightcache
