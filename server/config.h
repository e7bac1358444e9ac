// ServerConfig: everything flightcache-server is configured with, as one plain struct.
//
// Defaults are written in place and match the spec; flags.cc maps command-line flags and their
// FLIGHTCACHE_* environment fallbacks onto this struct, and nothing else reads flags. Validate()
// checks the whole configuration up front — including that the origin URL and the listen
// addresses parse — so a bad value fails at start-up, before anything is bound, with one message
// that names the offending flag.
//
// Thread-safety: a plain value; copy it freely. Not synchronised.
//
// Usage:
//   ServerConfig config;
//   config.origin = "grpc://10.0.0.7:9000";
//   if (absl::Status s = config.Validate(); !s.ok()) Fail(s);  // "--origin: ..."
#ifndef FLIGHTCACHE_SERVER_CONFIG_H_
#define FLIGHTCACHE_SERVER_CONFIG_H_

#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flightcache/flight_cache.h"
#include "flightcache/replica_set.h"
#include "server/admin_guard.h"
#include "server/fleet/redis_options.h"
#include "server/grpc_tls.h"
#include "server/tls_listener.h"

namespace flightcache {

inline constexpr char kDefaultOrigin[] =
    "sim://?latency_ms=20&jitter_ms=5&value_bytes=128&error_rate=0&not_found_rate=0";

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };
enum class LogFormat { kText, kJson };

struct ServerConfig {
  // gRPC listen address, HOST:PORT ([::1]:PORT for IPv6) or unix:PATH. Port 0 picks a free port.
  std::string listen = "127.0.0.1:50051";
  // With --listen=unix:PATH, the socket file's permission bits (at most 0777): who on the host
  // may connect. 0660: the server's user and group (a volume shared with the application).
  int listen_socket_mode = 0660;
  std::string origin = std::string(kDefaultOrigin);
  // A grpcs:// origin's CA (empty: the system's roots) and, for mTLS to the origin, this
  // sidecar's certificate and key (both or neither): --origin-tls-*. Only with grpcs://. Read by
  // OriginTlsCredentials(), once: rotating them means a restart.
  TlsClientFiles origin_tls{.flag_prefix = "--origin-tls"};
  // With several grpc:// replicas: --origin-eject-after (the rest of ReplicaSetOptions keeps the
  // contract's 10 s doubling to 5 min).
  ReplicaSetOptions origin_replicas;
  // With --origin=grpc://dns:///NAME:PORT: how often NAME is resolved again.
  absl::Duration origin_dns_refresh = absl::Seconds(5);
  // Prometheus /metrics address, HOST:PORT; empty disables the endpoint.
  std::string metrics_listen = "127.0.0.1:9464";
  // How long calls in flight may run on after SIGTERM before they are cancelled.
  absl::Duration drain_timeout = absl::Seconds(10);
  // How long a grpc:// origin fetch this sidecar cancelled keeps its --max-concurrent-loads
  // permit after gRPC has completed it: the origin learns of the cancellation only when its
  // server reads the RST_STREAM, and until then it is still working on the fetch (see
  // GrpcOriginOptions and docs/OPERATIONS.md for the measurements behind the default).
  absl::Duration cancelled_fetch_grace = absl::Milliseconds(20);
  int64_t max_batch_keys = 1000;
  // gRPC's HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one client connection may have open.
  int64_t max_concurrent_streams = 10000;
  // gRPC's resource quota: the memory its transports and calls may take before it pushes back
  // (smaller read buffers, then refusing new streams and connections). Not the cache's bytes.
  int64_t grpc_memory_limit_bytes = int64_t{1} << 30;
  // Keepalive enforcement: a client may ping at most once per this while the server sends it
  // nothing; the third ping too soon gets GOAWAY "too_many_pings" and the connection is closed.
  // gRPC's own default (and grpc-go's and grpc-java's): clients configured for any gRPC server
  // keep working, and a client cannot make the sidecar answer pings in a loop.
  absl::Duration keepalive_min_time = absl::Minutes(5);
  // A connection older than this (+-10% jitter) gets GOAWAY: its client reconnects for new calls,
  // and calls in flight get max_connection_age_grace to finish before it is closed. 0: off, the
  // default: a sidecar's clients are local, there is no balancing to redo by reconnecting.
  absl::Duration max_connection_age = absl::ZeroDuration();
  // Covers a Get that waits for a whole --load-timeout (5s) with room to spare; as long as
  // --drain-timeout, the same promise to calls in flight. A health Watch stream is cut at it.
  absl::Duration max_connection_age_grace = absl::Seconds(10);
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
  // The core's options: --ttl, --negative-ttl, --capacity-bytes, --load-timeout,
  // --abandoned-loads, --hedge-delay, --hedge-budget, --max-concurrent-loads,
  // --max-queued-loads, --max-key-bytes, --max-value-bytes.
  FlightCacheOptions cache;

  // The fleet tier (docs/PROTOCOL.md, "Beyond one pod"): the Redis that the sidecars of a fleet
  // share, redis://HOST:PORT[/DB]; empty: off, this sidecar caches alone.
  std::string fleet;
  // Every Redis call is answered within this; a slower answer counts as Redis being down for
  // that call (the sidecar goes on alone).
  absl::Duration fleet_timeout = absl::Milliseconds(20);
  // --fleet-lease-ttl and --fleet-max-value-bytes are the core's cache.fleet options.
  // Put before every Redis key and channel of this fleet (fleets may share one Redis).
  std::string fleet_key_prefix = "fc:";
  // A file holding Redis' password (AUTH), read at start-up by FleetRedisOptions(). The password
  // itself is never logged nor printed; the path is.
  std::string fleet_password_file;

  // A file holding the token Invalidate needs (metadata "authorization: Bearer <token>"), checked
  // by MakeAdminGuard() and followed while the server runs (AdminTokenFile); empty: Invalidate
  // only from loopback and unix-socket peers.
  // The token is never logged nor printed; the path is.
  std::string admin_token_file;

  // Listener TLS: the certificate chain and key served (both, or neither: plaintext), and the CA
  // that client certificates must be signed by (mTLS). The files are watched and re-read when
  // they change (server/tls_listener.h). Validate() checks the flags go together; the files are
  // read by TlsListenerCredentials::Start().
  TlsListenerFiles tls;

  // OK, or INVALID_ARGUMENT whose message starts with the flag at fault ("--ttl: ...").
  absl::Status Validate() const;
  // The --fleet* part of Validate(). Does not read --fleet-password-file (FleetRedisOptions does).
  absl::Status ValidateFleet() const;
  // The --tls-* part of Validate(): the flags go together. Does not read the files.
  absl::Status ValidateTls() const;
  // The --origin-tls-* part of Validate(): only with a grpcs:// origin, cert and key together.
  // Does not read the files.
  absl::Status ValidateOriginTls() const;
  // The --listen-socket-mode, --keepalive-min-time and --max-connection-age* part of Validate().
  absl::Status ValidateListenerBounds() const;

  // The effective configuration on one line ("listen=127.0.0.1:50051 origin=sim://... ..."),
  // for the start-up log line and --check-config.
  std::string Describe() const;

  // The largest request the Cache service must accept: a BatchGet (or Invalidate) of
  // max_batch_keys keys of max_key_bytes each, plus protobuf framing. REQUIRES: Validate() ok.
  int MaxRequestBytes() const;

  // What the fleet tier's Redis connections are configured with: --fleet's endpoint,
  // --fleet-timeout, and the password read from --fleet-password-file (now: this reads the
  // file). INVALID_ARGUMENT naming the flag at fault, never showing the password.
  // REQUIRES: !fleet.empty().
  absl::StatusOr<RedisOptions> FleetRedisOptions() const;

  // Who may call Invalidate: the token read from --admin-token-file (now: this reads the file),
  // or loopback and unix-socket peers only. INVALID_ARGUMENT naming the flag, never the token.
  absl::StatusOr<AdminGuard> MakeAdminGuard() const;

  // The grpc:// origin channel's receive limit: above max_value_bytes, so an oversized value
  // reaches the core (which answers RESOURCE_EXHAUSTED) instead of failing in the transport.
  int OriginMaxResponseBytes() const;

  // TLS for a grpcs:// origin from the --origin-tls-* files (now: this reads and checks them);
  // null for any other origin. INVALID_ARGUMENT naming the flag at fault.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> OriginTlsCredentials() const;
};

// Checks a listen address: HOST:PORT with a port in [0, 65535], [IPV6]:PORT, or (when
// `allow_unix` is set) unix:PATH. `flag` names the flag in the error ("--listen").
absl::Status ValidateListenAddress(absl::string_view flag, absl::string_view address,
                                   bool allow_unix);

// "off", a duration ("20ms") or a percentile ("p95") — the --hedge-delay spelling of `hedge`.
std::string FormatHedgeDelay(const HedgeOptions& hedge);
// --max-concurrent-loads as given: N, or adaptive:MIN-MAX.
std::string FormatConcurrencyLimit(const FlightCacheOptions& cache);

absl::string_view LogLevelName(LogLevel level);
absl::string_view LogFormatName(LogFormat format);
absl::string_view AbandonPolicyName(AbandonPolicy policy);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_CONFIG_H_
