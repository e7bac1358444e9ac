// GrpcTarget: the load generator's Target over gRPC — flightcache.v1.Cache Get, BatchGet and
// Invalidate through the callback API, so one process keeps thousands of calls in flight without
// a thread each.
//
// Calls are spread round-robin over `channels` channels, each with its own TCP connection (a
// local subchannel pool), because one HTTP/2 connection can become the bottleneck at high rates.
// FetchStats() reads the server's Stats for the report's before/after deltas.
//
// Thread-safety: thread-safe. `done` runs on a gRPC callback thread (or inline when the call
// fails at once) and must not block.
// Lifetime: every call must have answered before the GrpcTarget is destroyed.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<GrpcTarget>> target = GrpcTarget::Connect({.target = addr});
//   (*target)->Start({.keys = {"k"}}, [](std::vector<ItemResult> r) { ... });
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_GRPC_TARGET_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_GRPC_TARGET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/loadgen/report.h"
#include "client/loadgen/target.h"
#include "client/tls_flags.h"
#include "flightcache/v1/cache.grpc.pb.h"

namespace flightcache::loadgen {

struct GrpcTargetOptions {
  std::string target = "127.0.0.1:50051";
  int channels = 1;
  absl::Duration connect_timeout = absl::Seconds(5);
  // Plaintext unless set (--tls and friends: client/tls_flags.h).
  ClientChannelSecurity security;
};

class GrpcTarget final : public Target {
 public:
  // Creates the channels and waits until each is connected (UNAVAILABLE if one is not within
  // connect_timeout).
  static absl::StatusOr<std::unique_ptr<GrpcTarget>> Connect(const GrpcTargetOptions& options);

  void Start(CallSpec call, CallDone done) override;

  absl::StatusOr<ServerStats> FetchStats(absl::Duration deadline);

 private:
  explicit GrpcTarget(std::vector<std::unique_ptr<flightcache::v1::Cache::Stub>> stubs)
      : stubs_(std::move(stubs)) {}
  flightcache::v1::Cache::Stub& NextStub();

  std::vector<std::unique_ptr<flightcache::v1::Cache::Stub>> stubs_;
  std::atomic<uint64_t> next_stub_{0};  // relaxed: only spreads load, orders nothing
};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_GRPC_TARGET_H_
