// Origin factory: turns an --origin URL into an Origin.
//
//   grpc://HOST:PORT             a remote flightcache.v1.Origin (GrpcOrigin)
//   grpcs://HOST:PORT            the same over TLS (GrpcOriginOptions::tls_credentials)
//   grpc://HOST:PORT,HOST:PORT   replicas of one origin (a ReplicaSet of GrpcOrigins)
//   grpc://dns:///NAME:PORT      replicas at every address NAME resolves to, re-resolved as it
//                                runs (a ReplicaSet kept up to date by DnsReplicaWatcher)
//   sim://?latency_ms=20&...     the built-in simulated origin (lib's sim::SimOrigin; see
//                                flightcache/sim/sim_origin.h)
//   http://HOST:PORT/PREFIX      planned; rejected for now with a clear config error
//
// ParseOriginUrl() only checks the URL (for --check-config and ServerConfig::Validate());
// CreateOrigin() builds the origin. Neither connects: a grpc:// origin connects on first use.
//
// Thread-safety: pure functions.
//
// Usage:
//   absl::StatusOr<OriginSpec> spec = ParseOriginUrl(config.origin);
//   absl::StatusOr<std::unique_ptr<Origin>> origin =
//       CreateOrigin(*spec, timers, {.max_response_bytes = 5 << 20});
#ifndef FLIGHTCACHE_SERVER_ORIGIN_FACTORY_H_
#define FLIGHTCACHE_SERVER_ORIGIN_FACTORY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "flightcache/origin.h"
#include "flightcache/replica_set.h"
#include "flightcache/sim/origin_model.h"
#include "flightcache/timer_queue.h"
#include "server/grpc_origin.h"

namespace flightcache {

struct OriginSpec {
  enum class Kind { kGrpc, kSim };
  Kind kind = Kind::kSim;
  std::vector<std::string> grpc_targets;  // kGrpc: HOST:PORT, one per replica (in URL order)
  bool tls = false;                       // kGrpc: grpcs://
  // kGrpc with dns:///NAME:PORT (then grpc_targets is empty): the name and port.
  std::string dns_name;
  int dns_port = 0;
  sim::OriginModelOptions sim;  // kSim
};

// INVALID_ARGUMENT (without the flag name; the caller adds "--origin: ") for a URL that is not
// one of the forms above, or whose host, port or parameters are bad.
absl::StatusOr<OriginSpec> ParseOriginUrl(absl::string_view url);

// `timers` drives the simulated origin and the grpc:// origin's grace pauses, and must outlive the
// origin. `grpc` is what a grpc:// origin is built with (its `timers` is replaced by `timers`;
// its `tls_credentials` are used for grpcs:// only, and default to the system's roots).
// A grpc:// URL with several addresses is a ReplicaSet of one GrpcOrigin per address, with
// `replicas` and `observer` (its clock: timers.clock()); with one address, a GrpcOrigin alone.
// A dns:/// URL is a ReplicaSet with no member yet: DnsReplicaWatcher fills it, with origins
// from MakeReplicaMaker().
absl::StatusOr<std::unique_ptr<Origin>> CreateOrigin(const OriginSpec& spec, TimerQueue& timers,
                                                     GrpcOriginOptions grpc,
                                                     const ReplicaSetOptions& replicas = {},
                                                     ReplicaSet::FetchObserver observer = nullptr);

// Makes the GrpcOrigin of one replica address of `spec` (grpc://, with CreateOrigin's `timers` and
// `grpc`). Over TLS a dns:/// replica's certificate is checked against the DNS name, not the
// address. A replica that cannot be made (not expected once the URL parsed) fails every fetch.
std::function<std::unique_ptr<Origin>(const std::string& address)> MakeReplicaMaker(
    const OriginSpec& spec, TimerQueue& timers, GrpcOriginOptions grpc);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_ORIGIN_FACTORY_H_
