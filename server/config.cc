#include "server/config.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flightcache/option_checks.h"
#include "flightcache/support/file_util.h"
#include "server/fleet/redis_fleet_keys.h"
#include "server/fleet/redis_options.h"
#include "server/origin_factory.h"

namespace flightcache {
namespace {

// Protobuf framing per repeated string: one tag byte and up to five length bytes (rounded up).
constexpr int64_t kPerKeyFramingBytes = 8;
// Slack for the rest of a request (the message header, gRPC's own framing).
constexpr int64_t kRequestSlackBytes = 64 << 10;
// Room above --max-value-bytes on the origin channel, for the response's other fields.
constexpr int64_t kOriginResponseSlackBytes = 1 << 20;
constexpr int64_t kMaxMessageBytes = std::numeric_limits<int32_t>::max();

// Upper bounds of the server's own duration and size flags (the core bounds its options itself):
// far above any sensible setting, low enough that no deadline computed from them can overflow.
constexpr absl::Duration kMaxTimeout = absl::Hours(24);
// Resolving less often than hourly would leave a moved replica set stale for too long.
constexpr absl::Duration kMaxDnsRefresh = absl::Hours(1);
constexpr absl::Duration kMaxCancelledFetchGrace = absl::Minutes(1);
// Keys and values travel in one gRPC message each: these keep a request and an origin response
// below gRPC's 2 GiB limit (the core alone would allow up to Value::kMaxBytes).
constexpr int64_t kMaxKeyBytesLimit = int64_t{16} << 20;
constexpr int64_t kMaxValueBytesLimit = int64_t{1} << 30;
constexpr int64_t kMaxBatchKeysLimit = 1'000'000;
constexpr int64_t kMaxConcurrentStreamsLimit = 1'000'000;
// Below a few MiB gRPC cannot hold one large request; above 1 TiB is a typo.
constexpr int64_t kMinGrpcMemoryLimit = int64_t{16} << 20;
constexpr int64_t kMaxGrpcMemoryLimit = int64_t{1} << 40;
// The fleet tier: a Redis call slower than seconds is no help to a cache; Redis takes strings up
// to 512 MB, and a value of hundreds of MB in it would be a cache of its own.
constexpr absl::Duration kMaxFleetTimeout = absl::Seconds(10);
constexpr int64_t kMaxFleetValueBytes = int64_t{256} << 20;
constexpr size_t kMaxFleetKeyPrefixBytes = 64;

absl::Status FlagError(absl::string_view flag, absl::string_view what) {
  return OptionError(flag, what);
}

// The flag that sets each core option the core's errors name ("load_timeout: ..."): the one place
// option names become flag names.
constexpr std::pair<absl::string_view, absl::string_view> kOptionFlags[] = {
    {"store.capacity_bytes", "--capacity-bytes"},
    {"default_ttl", "--ttl"},
    {"negative_ttl", "--negative-ttl"},
    {"stale_while_revalidate", "--stale-while-revalidate"},
    {"stale_if_error", "--stale-if-error"},
    {"refresh_ahead", "--refresh-ahead"},
    {"load_timeout", "--load-timeout"},
    {"max_concurrent_loads", "--max-concurrent-loads"},
    {"adaptive_concurrency.min_limit", "--max-concurrent-loads"},
    {"adaptive_concurrency.max_limit", "--max-concurrent-loads"},
    {"max_queued_loads", "--max-queued-loads"},
    {"load_queue_lifo_after", "--load-queue-lifo-after"},
    {"max_key_bytes", "--max-key-bytes"},
    {"max_value_bytes", "--max-value-bytes"},
    {"hedge.delay", "--hedge-delay"},
    {"hedge.percentile", "--hedge-delay"},
    {"hedge.budget", "--hedge-budget"},
    {"fleet.lease_ttl", "--fleet-lease-ttl"},
    {"fleet.max_value_bytes", "--fleet-max-value-bytes"},
    {"eject_after", "--origin-eject-after"},
};

// The core's "option: what" as "--flag: what"; an option no flag sets keeps its name.
absl::Status AsFlagError(const absl::Status& status) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon != absl::string_view::npos) {
    for (const auto& [option, flag] : kOptionFlags) {
      if (message.substr(0, colon) == option) return FlagError(flag, message.substr(colon + 2));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid cache options: ", message));
}

}  // namespace

absl::Status ValidateListenAddress(absl::string_view flag, absl::string_view address,
                                   bool allow_unix) {
  if (allow_unix && absl::StartsWith(address, "unix:")) {
    if (address.size() == 5) return FlagError(flag, "unix: address has no path");
    return absl::OkStatus();
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) {
    return FlagError(flag, absl::StrCat("'", address, "' is not HOST:PORT"));
  }
  const absl::string_view host = address.substr(0, colon);
  const absl::string_view port_text = address.substr(colon + 1);
  if (host.empty()) {
    return FlagError(flag, absl::StrCat("'", address,
                                        "' has no host (use 0.0.0.0:PORT or [::]:PORT for all "
                                        "interfaces)"));
  }
  const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (!bracketed && absl::StrContains(host, ':')) {
    return FlagError(
        flag, absl::StrCat("'", address, "': write IPv6 addresses in brackets, as [ADDR]:PORT"));
  }
  if (!bracketed && (absl::StrContains(host, '/') || absl::StrContains(host, ' ') ||
                     absl::StrContains(host, '[') || absl::StrContains(host, ']'))) {
    return FlagError(flag, absl::StrCat("'", host, "' is not a host name or address"));
  }
  int port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return FlagError(flag, absl::StrCat("'", port_text, "' is not a port in [0, 65535]"));
  }
  return absl::OkStatus();
}

absl::Status ServerConfig::Validate() const {
  if (absl::Status s = ValidateListenAddress("--listen", listen, /*allow_unix=*/true); !s.ok()) {
    return s;
  }
  if (!metrics_listen.empty()) {
    if (absl::Status s = ValidateListenAddress("--metrics-listen", metrics_listen, false);
        !s.ok()) {
      return s;
    }
  }
  if (absl::StatusOr<OriginSpec> spec = ParseOriginUrl(origin); !spec.ok()) {
    return FlagError("--origin", spec.status().message());
  }
  if (absl::Status s = origin_replicas.Validate(); !s.ok()) return AsFlagError(s);
  if (absl::Status s =
          CheckPositiveDuration("--origin-dns-refresh", origin_dns_refresh, kMaxDnsRefresh);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = cache.Validate(); !s.ok()) return AsFlagError(s);
  if (absl::Status s = CheckNonNegativeDuration("--drain-timeout", drain_timeout, kMaxTimeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckNonNegativeDuration("--cancelled-fetch-grace", cancelled_fetch_grace,
                                                kMaxCancelledFetchGrace);
      !s.ok()) {
    return s;
  }
  if (cache.max_key_bytes > kMaxKeyBytesLimit) {
    return FlagError("--max-key-bytes",
                     absl::StrCat("must be at most ", kMaxKeyBytesLimit,
                                  " (one gRPC request), got ", cache.max_key_bytes));
  }
  if (cache.max_value_bytes > kMaxValueBytesLimit) {
    return FlagError("--max-value-bytes",
                     absl::StrCat("must be at most ", kMaxValueBytesLimit,
                                  " (one gRPC response), got ", cache.max_value_bytes));
  }
  if (absl::Status s = CheckRange("--max-batch-keys", max_batch_keys, 1, kMaxBatchKeysLimit);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("--max-concurrent-streams", max_concurrent_streams, 1,
                                  kMaxConcurrentStreamsLimit);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("--grpc-memory-limit", grpc_memory_limit_bytes,
                                  kMinGrpcMemoryLimit, kMaxGrpcMemoryLimit);
      !s.ok()) {
    return s;
  }
  if (max_batch_keys * (cache.max_key_bytes + kPerKeyFramingBytes) + kRequestSlackBytes >
      kMaxMessageBytes) {
    return FlagError("--max-batch-keys",
                     absl::StrCat("a BatchGet of ", max_batch_keys,
                                  " keys of --max-key-bytes=", cache.max_key_bytes,
                                  " would exceed gRPC's 2 GiB message limit; lower either"));
  }
  if (absl::Status s = ValidateTls(); !s.ok()) return s;
  if (absl::Status s = ValidateOriginTls(); !s.ok()) return s;
  if (absl::Status s = ValidateListenerBounds(); !s.ok()) return s;
  return ValidateFleet();
}

absl::Status ServerConfig::ValidateOriginTls() const {
  const std::pair<absl::string_view, const std::string*> files[] = {
      {"--origin-tls-ca-file", &origin_tls.ca_file},
      {"--origin-tls-cert-file", &origin_tls.cert_file},
      {"--origin-tls-key-file", &origin_tls.key_file}};
  // Refused rather than ignored: a CA given for a grpc:// origin would look like TLS and be
  // plaintext.
  if (!absl::StartsWith(origin, "grpcs://")) {
    for (const auto& [flag, file] : files) {
      if (!file->empty()) return FlagError(flag, "set, but --origin is not grpcs://");
    }
  }
  if (origin_tls.cert_file.empty() != origin_tls.key_file.empty()) {
    return FlagError(
        origin_tls.cert_file.empty() ? "--origin-tls-cert-file" : "--origin-tls-key-file",
        "--origin-tls-cert-file and --origin-tls-key-file go together (mTLS to the origin): give "
        "both or neither");
  }
  return absl::OkStatus();
}

absl::Status ServerConfig::ValidateListenerBounds() const {
  if (listen_socket_mode < 0 || listen_socket_mode > 0777) {
    return FlagError("--listen-socket-mode",
                     absl::StrFormat("must be a mode from 0 to 0777, got 0%o", listen_socket_mode));
  }
  if (absl::Status s =
          CheckPositiveDuration("--keepalive-min-time", keepalive_min_time, kMaxTimeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckNonNegativeDuration("--max-connection-age", max_connection_age, kMaxTimeout);
      !s.ok()) {
    return s;
  }
  return CheckNonNegativeDuration("--max-connection-age-grace", max_connection_age_grace,
                                  kMaxTimeout);
}

absl::Status ServerConfig::ValidateTls() const {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return FlagError(tls.cert_file.empty() ? "--tls-cert-file" : "--tls-key-file",
                     "--tls-cert-file and --tls-key-file go together: give both for TLS");
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    return FlagError("--tls-client-ca-file",
                     "mTLS needs TLS: give --tls-cert-file and --tls-key-file too");
  }
  return absl::OkStatus();
}

absl::Status ServerConfig::ValidateFleet() const {
  if (!fleet.empty()) {
    if (absl::StatusOr<RedisEndpoint> e = ParseRedisUrl(fleet); !e.ok()) {
      return FlagError("--fleet", e.status().message());
    }
  } else if (!fleet_password_file.empty()) {
    return FlagError("--fleet-password-file", "set, but --fleet is not");
  }
  if (absl::Status s = CheckPositiveDuration("--fleet-timeout", fleet_timeout, kMaxFleetTimeout);
      !s.ok()) {
    return s;
  }
  // The lease TTL's own bounds are the core's (cache.fleet); the server adds how it must relate
  // to the Redis timeout.
  if (cache.fleet.lease_ttl <= fleet_timeout) {
    return FlagError(
        "--fleet-lease-ttl",
        absl::StrCat("must be longer than --fleet-timeout (", absl::FormatDuration(fleet_timeout),
                     "), got ", absl::FormatDuration(cache.fleet.lease_ttl)));
  }
  if (absl::Status s = CheckRange("--fleet-max-value-bytes", cache.fleet.max_value_bytes, 1,
                                  kMaxFleetValueBytes);
      !s.ok()) {
    return s;
  }
  if (fleet_key_prefix.size() > kMaxFleetKeyPrefixBytes) {
    return FlagError("--fleet-key-prefix", absl::StrCat("must be at most ", kMaxFleetKeyPrefixBytes,
                                                        " bytes, got ", fleet_key_prefix.size()));
  }
  if (absl::Status s = ValidateFleetKeyPrefix(fleet_key_prefix); !s.ok()) {
    return FlagError("--fleet-key-prefix", s.message());
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisOptions> ServerConfig::FleetRedisOptions() const {
  absl::StatusOr<RedisEndpoint> endpoint = ParseRedisUrl(fleet);
  if (!endpoint.ok()) return FlagError("--fleet", endpoint.status().message());
  RedisOptions options{.endpoint = *std::move(endpoint)};
  options.command_timeout = fleet_timeout;
  if (!fleet_password_file.empty()) {
    absl::StatusOr<std::string> password = ReadRedisPasswordFile(fleet_password_file);
    if (!password.ok()) return FlagError("--fleet-password-file", password.status().message());
    options.password = *std::move(password);
  }
  if (absl::Status s = options.Validate(); !s.ok()) return FlagError("--fleet", s.message());
  return options;
}

absl::StatusOr<AdminGuard> ServerConfig::MakeAdminGuard() const {
  if (admin_token_file.empty()) return AdminGuard::LocalPeersOnly();
  absl::StatusOr<std::string> token = support::ReadSecretFile("admin token file", admin_token_file);
  if (!token.ok()) return FlagError("--admin-token-file", token.status().message());
  return AdminGuard::WithToken(*token);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ServerConfig::OriginTlsCredentials()
    const {
  if (!absl::StartsWith(origin, "grpcs://")) return nullptr;
  return MakeTlsChannelCredentials(origin_tls);
}

int ServerConfig::MaxRequestBytes() const {
  const int64_t bytes =
      max_batch_keys * (cache.max_key_bytes + kPerKeyFramingBytes) + kRequestSlackBytes;
  return static_cast<int>(std::min(bytes, kMaxMessageBytes));
}

int ServerConfig::OriginMaxResponseBytes() const {
  return static_cast<int>(
      std::min(cache.max_value_bytes + kOriginResponseSlackBytes, kMaxMessageBytes));
}

std::string ServerConfig::Describe() const {
  return absl::StrCat(
      "listen=", listen, " listen-socket-mode=", absl::StrFormat("0%o", listen_socket_mode),
      " origin=", origin, " origin-tls-ca-file=",
      origin_tls.ca_file.empty() ? "(none: system roots)" : origin_tls.ca_file,
      " origin-tls-cert-file=", origin_tls.cert_file.empty() ? "(none)" : origin_tls.cert_file,
      " origin-tls-key-file=", origin_tls.key_file.empty() ? "(none)" : origin_tls.key_file,
      " origin-eject-after=", origin_replicas.eject_after,
      " origin-dns-refresh=", absl::FormatDuration(origin_dns_refresh),
      " origin-hedge-other-replica=", origin_replicas.hedge_to_other_replica ? "true" : "false",
      " metrics-listen=", metrics_listen.empty() ? "(disabled)" : metrics_listen,
      " ttl=", absl::FormatDuration(cache.default_ttl),
      " negative-ttl=", absl::FormatDuration(cache.negative_ttl),
      " stale-while-revalidate=", absl::FormatDuration(cache.stale_while_revalidate),
      " stale-if-error=", absl::FormatDuration(cache.stale_if_error),
      " refresh-ahead=", cache.refresh_ahead, " capacity-bytes=", cache.store.capacity_bytes,
      " load-timeout=", absl::FormatDuration(cache.load_timeout),
      " abandoned-loads=", AbandonPolicyName(cache.abandoned_loads),
      " hedge-delay=", FormatHedgeDelay(cache.hedge), " hedge-budget=", cache.hedge.budget,
      " max-concurrent-loads=", FormatConcurrencyLimit(cache),
      " max-queued-loads=", cache.max_queued_loads,
      " load-queue-lifo-after=", absl::FormatDuration(cache.load_queue_lifo_after),
      " max-key-bytes=", cache.max_key_bytes, " max-value-bytes=", cache.max_value_bytes,
      " max-batch-keys=", max_batch_keys, " max-concurrent-streams=", max_concurrent_streams,
      " grpc-memory-limit=", grpc_memory_limit_bytes,
      " keepalive-min-time=", absl::FormatDuration(keepalive_min_time), " max-connection-age=",
      max_connection_age == absl::ZeroDuration() ? "(off)"
                                                 : absl::FormatDuration(max_connection_age),
      " max-connection-age-grace=", absl::FormatDuration(max_connection_age_grace),
      " drain-timeout=", absl::FormatDuration(drain_timeout),
      " cancelled-fetch-grace=", absl::FormatDuration(cancelled_fetch_grace),
      " log-level=", LogLevelName(log_level), " log-format=", LogFormatName(log_format),
      " fleet=", fleet.empty() ? "(off)" : fleet,
      " fleet-timeout=", absl::FormatDuration(fleet_timeout),
      " fleet-lease-ttl=", absl::FormatDuration(cache.fleet.lease_ttl),
      " fleet-max-value-bytes=", cache.fleet.max_value_bytes,
      " fleet-key-prefix=", fleet_key_prefix,
      " fleet-password-file=", fleet_password_file.empty() ? "(none)" : fleet_password_file,
      " admin-token-file=", admin_token_file.empty() ? "(none: loopback only)" : admin_token_file,
      " tls-cert-file=", tls.cert_file.empty() ? "(none: plaintext)" : tls.cert_file,
      " tls-key-file=", tls.key_file.empty() ? "(none)" : tls.key_file,
      " tls-client-ca-file=", tls.client_ca_file.empty() ? "(none)" : tls.client_ca_file);
}

std::string FormatConcurrencyLimit(const FlightCacheOptions& cache) {
  if (!cache.adaptive_concurrency) return absl::StrCat(cache.max_concurrent_loads);
  return absl::StrCat("adaptive:", cache.adaptive_concurrency->min_limit, "-",
                      cache.adaptive_concurrency->max_limit);
}

std::string FormatHedgeDelay(const HedgeOptions& hedge) {
  if (!hedge.enabled) return "off";
  if (hedge.percentile > 0) return absl::StrCat("p", hedge.percentile);
  return absl::FormatDuration(hedge.delay);
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

absl::string_view LogFormatName(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

absl::string_view AbandonPolicyName(AbandonPolicy policy) {
  return policy == AbandonPolicy::kFinish ? "finish" : "cancel";
}

}  // namespace flightcache
