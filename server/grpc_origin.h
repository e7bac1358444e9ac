// GrpcOrigin: an Origin that calls a remote flightcache.v1.Origin service over gRPC
// (`--origin=grpc://HOST:PORT`).
//
// Each Fetch is one asynchronous unary call on the callback stub: no thread waits for it. The
// load's timeout becomes the call's deadline, and the load's stop token cancels the call
// (ClientContext::TryCancel), so the origin sees CANCELLED when the last waiter has gone. The
// channel accepts responses up to `max_response_bytes`, which the server sets above
// --max-value-bytes so an oversized value reaches the core and is reported as RESOURCE_EXHAUSTED.
//
// Results: the value and ttl_ms; NOT_FOUND passes through; a response with ttl_ms < 0 is garbage
// (INTERNAL). A value too large for the channel is RESOURCE_EXHAUSTED. Any other remote status is
// a failed fetch and passes through with its code and message (the core reports it as
// UNAVAILABLE) — except INTERNAL and RESOURCE_EXHAUSTED, which origin.h reserves for "garbage" and
// "value too large": a remote origin sending them has failed, so they arrive as UNAVAILABLE
// naming the remote code. A call we cancelled ourselves answers CANCELLED.
//
// Thread-safety: thread-safe. Lifetime: the GrpcOrigin must outlive every fetch's `done` (the
// FlightCache waits for its fetches in its destructor). Destroying it does not wait for calls.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<GrpcOrigin>> origin =
//       GrpcOrigin::Create("10.0.0.7:9000", {.max_response_bytes = 5 << 20});
#ifndef FLIGHTCACHE_SERVER_GRPC_ORIGIN_H_
#define FLIGHTCACHE_SERVER_GRPC_ORIGIN_H_

#include <grpcpp/channel.h>

#include <memory>
#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "flightcache/origin.h"
#include "flightcache/v1/origin.grpc.pb.h"

namespace flightcache {

struct GrpcOriginOptions {
  // The channel's max receive message size (gRPC's default is 4 MiB).
  int max_response_bytes = 5 << 20;
};

class GrpcOrigin final : public Origin {
 public:
  // `target` is HOST:PORT. The channel connects lazily: an unreachable origin is not an error
  // here; its fetches fail with UNAVAILABLE.
  static absl::StatusOr<std::unique_ptr<GrpcOrigin>> Create(const std::string& target,
                                                            const GrpcOriginOptions& options);
  GrpcOrigin(const GrpcOrigin&) = delete;
  GrpcOrigin& operator=(const GrpcOrigin&) = delete;

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override;
  std::string Describe() const override { return "grpc://" + target_; }

 private:
  struct Call;
  GrpcOrigin(std::string target, std::shared_ptr<grpc::Channel> channel);

  const std::string target_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Origin::Stub> stub_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_GRPC_ORIGIN_H_
