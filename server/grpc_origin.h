// GrpcOrigin: an Origin that calls a remote flightcache.v1.Origin service over gRPC
// (`--origin=grpc://HOST:PORT`), or over TLS with `tls_credentials` (`grpcs://HOST:PORT`).
//
// Each Fetch is one asynchronous unary call on a generic (ByteBuffer) callback stub: no thread
// waits for it, and the reply's bytes reach us unparsed, so a reply that is not a FetchResponse is
// seen as such (gRPC's typed callback stub reports such a reply as OK with a half-parsed, empty
// message: the garbage would be answered and cached as an empty value). The
// load's timeout becomes the call's deadline, and the load's stop token cancels the call
// (ClientContext::TryCancel), so the origin sees CANCELLED when the last waiter has gone. The
// channel accepts responses up to `max_response_bytes`, which the server sets above
// --max-value-bytes so an oversized value reaches the core and is reported as RESOURCE_EXHAUSTED.
//
// Results: the value and ttl_ms; NOT_FOUND passes through; a reply that does not parse as a
// FetchResponse (or has no message), or one with ttl_ms < 0, is garbage (INTERNAL, counted through
// `on_garbage_reply`). A value too large for the channel is RESOURCE_EXHAUSTED. Any other remote
// status is a failed fetch and passes through with its code and message (the core reports it as
// UNAVAILABLE) — except INTERNAL and RESOURCE_EXHAUSTED, which origin.h reserves for "garbage" and
// "value too large": a remote origin sending them has failed, so they arrive as UNAVAILABLE
// naming the remote code. A call we cancelled ourselves answers CANCELLED.
//
// A call we cancelled, or that its deadline (the load's timeout) ended, is reported done only
// `cancelled_fetch_grace` after gRPC completed it. gRPC completes a call cancelled with TryCancel,
// or past its deadline, locally, at once; the origin learns of it later, when
// its server has read the RST_STREAM and run the handler's OnCancel (measured on loopback: about
// 0.2 ms typically, 2-4 ms under load, 15 ms while a process starts its threads, and more for
// an overloaded origin: the overload benchmark still saw 11 with a limit of 8 and a 5 ms pause).
// The core frees the fetch's --max-concurrent-loads permit when `done` runs, so without the pause
// the next queued load's fetch reaches the origin before the origin has let go of the cancelled
// one, and the origin has more than the limit in flight (the overload benchmark saw 16 with a limit
// of 8). No protocol signal tells a client when the origin has processed a cancellation, so the
// pause is a bound, not a handshake. It delays only the permit: the load itself was already
// completed (a cancelled load), or is completed by the load's own timer, which is due at the same
// moment as the call's deadline.
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
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flightcache/origin.h"
#include "flightcache/timer_queue.h"

namespace flightcache {

struct GrpcOriginOptions {
  // The channel's max receive message size (gRPC's default is 4 MiB).
  int max_response_bytes = 5 << 20;
  // Runs the grace pauses; null, or a zero grace: a cancelled call is done at once. Must
  // outlive every fetch's `done` (the FlightCache's own timer queue does).
  TimerQueue* timers = nullptr;
  // How long a call we cancelled is still reported in flight after gRPC completed it (see
  // above): --cancelled-fetch-grace.
  absl::Duration cancelled_fetch_grace = absl::Milliseconds(20);
  // Called once for every reply that is garbage (see above), before its fetch is done; may be
  // empty. Runs on a gRPC thread.
  std::function<void()> on_garbage_reply;
  // TLS for the channel (grpcs://: MakeTlsChannelCredentials() in server/grpc_tls.h); null:
  // plaintext (grpc://).
  std::shared_ptr<grpc::ChannelCredentials> tls_credentials;
  // With TLS: the name the origin's certificate must carry, when it is not the target's host (a
  // replica dialled by the address its DNS name resolved to). Empty: the target's host.
  std::string tls_server_name;
};

class GrpcOrigin final : public Origin {
 public:
  // `target` is HOST:PORT. The channel connects lazily: an unreachable origin (or one whose TLS
  // handshake fails) is not an error here; its fetches fail with UNAVAILABLE.
  static absl::StatusOr<std::unique_ptr<GrpcOrigin>> Create(const std::string& target,
                                                            const GrpcOriginOptions& options);
  // Over a channel the caller made, e.g. a grpc::Server's InProcessChannel (the origin-reply fuzz
  // target); `name` is what Describe() shows after grpc:// (grpcs:// with options.tls_credentials).
  // options.max_response_bytes is not applied: the channel's own arguments decide.
  static std::unique_ptr<GrpcOrigin> CreateWithChannel(std::string name,
                                                       std::shared_ptr<grpc::Channel> channel,
                                                       const GrpcOriginOptions& options);
  GrpcOrigin(const GrpcOrigin&) = delete;
  GrpcOrigin& operator=(const GrpcOrigin&) = delete;

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override;
  std::string Describe() const override { return scheme_ + target_; }

 private:
  struct Call;
  GrpcOrigin(std::string target, std::shared_ptr<grpc::Channel> channel,
             const GrpcOriginOptions& options);

  const std::string scheme_;  // grpc:// or grpcs://
  const std::string target_;
  TimerQueue* const timers_;
  const absl::Duration cancelled_fetch_grace_;
  const std::function<void()> on_garbage_reply_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<grpc::GenericStub> stub_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_GRPC_ORIGIN_H_
