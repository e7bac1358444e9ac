#include "server/flags.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "flightcache/support/flags.h"

// Value types for the flags that are not plain strings. Each has its own parser (found by ADL)
// so a bad value gets an error message that says what was expected.
namespace flightcache::flag_types {

struct Duration {
  absl::Duration value;
};
bool AbslParseFlag(absl::string_view text, Duration* out, std::string* error) {
  if (!absl::ParseDuration(absl::StripAsciiWhitespace(text), &out->value)) {
    *error = "want a duration with a unit, e.g. 250ms, 5s or 1m";
    return false;
  }
  return true;
}
std::string AbslUnparseFlag(const Duration& d) { return absl::FormatDuration(d.value); }

// Bytes: a plain integer, or with a KiB/MiB/GiB suffix.
struct ByteSize {
  int64_t bytes = 0;
};
bool AbslParseFlag(absl::string_view text, ByteSize* out, std::string* error) {
  text = absl::StripAsciiWhitespace(text);
  int64_t multiplier = 1;
  for (const auto& [suffix, m] : {std::pair<absl::string_view, int64_t>{"KiB", int64_t{1} << 10},
                                  {"MiB", int64_t{1} << 20},
                                  {"GiB", int64_t{1} << 30},
                                  {"B", 1}}) {
    if (absl::ConsumeSuffix(&text, suffix)) {
      multiplier = m;
      break;
    }
  }
  text = absl::StripTrailingAsciiWhitespace(text);
  int64_t n = 0;
  if (text.empty() || !absl::SimpleAtoi(text, &n) || n < 0 ||
      n > std::numeric_limits<int64_t>::max() / multiplier) {
    *error = "want a byte count such as 268435456, 4KiB, 256MiB or 1GiB";
    return false;
  }
  out->bytes = n * multiplier;
  return true;
}
std::string AbslUnparseFlag(const ByteSize& s) { return absl::StrCat(s.bytes); }

struct Count {
  int64_t value = 0;
};
bool AbslParseFlag(absl::string_view text, Count* out, std::string* error) {
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &out->value)) {
    *error = "want an integer";
    return false;
  }
  return true;
}
std::string AbslUnparseFlag(const Count& c) { return absl::StrCat(c.value); }

// A file mode in octal, as chmod takes it: 0660 (or 660, 0o660). Its range is Validate()'s.
struct FileMode {
  int mode = 0;
};
bool AbslParseFlag(absl::string_view text, FileMode* out, std::string* error) {
  text = absl::StripAsciiWhitespace(text);
  absl::ConsumePrefix(&text, "0o");
  constexpr size_t kMaxDigits = 8;  // far above 0777, far below int's range
  if (text.empty() || text.size() > kMaxDigits ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; })) {
    *error = "want an octal mode such as 0660";
    return false;
  }
  out->mode = 0;
  for (const char c : text) out->mode = out->mode * 8 + (c - '0');
  return true;
}
std::string AbslUnparseFlag(const FileMode& m) { return absl::StrFormat("0%o", m.mode); }

// N | adaptive | adaptive:MIN-MAX
struct ConcurrencyLimit {
  int64_t fixed = 0;
  std::optional<AdaptiveLimitOptions> adaptive;
};
bool AbslParseFlag(absl::string_view text, ConcurrencyLimit* out, std::string* error) {
  text = absl::StripAsciiWhitespace(text);
  constexpr char kWant[] = "want an integer, adaptive, or adaptive:MIN-MAX such as adaptive:4-256";
  if (absl::ConsumePrefix(&text, "adaptive")) {
    AdaptiveLimitOptions range;
    if (absl::ConsumePrefix(&text, ":")) {
      const std::vector<absl::string_view> bounds = absl::StrSplit(text, '-');
      if (bounds.size() != 2 || !absl::SimpleAtoi(bounds[0], &range.min_limit) ||
          !absl::SimpleAtoi(bounds[1], &range.max_limit)) {
        *error = kWant;
        return false;
      }
    } else if (!text.empty()) {
      *error = kWant;
      return false;
    }
    *out = ConcurrencyLimit{.adaptive = range};
    return true;
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(text, &n)) {
    *error = kWant;
    return false;
  }
  *out = ConcurrencyLimit{.fixed = n};
  return true;
}
std::string AbslUnparseFlag(const ConcurrencyLimit& c) {
  if (!c.adaptive) return absl::StrCat(c.fixed);
  return absl::StrCat("adaptive:", c.adaptive->min_limit, "-", c.adaptive->max_limit);
}

struct Fraction {
  double value = 0;
};
bool AbslParseFlag(absl::string_view text, Fraction* out, std::string* error) {
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &out->value)) {
    *error = "want a fraction, e.g. 0.05";
    return false;
  }
  return true;
}
std::string AbslUnparseFlag(const Fraction& f) { return absl::StrCat(f.value); }

// off | DURATION | pNN
struct HedgeDelay {
  bool enabled = false;
  absl::Duration delay = absl::ZeroDuration();
  double percentile = 0;
};
bool AbslParseFlag(absl::string_view text, HedgeDelay* out, std::string* error) {
  text = absl::StripAsciiWhitespace(text);
  constexpr char kWant[] = "want off, a duration such as 20ms, or a percentile such as p95";
  if (text == "off") {
    *out = HedgeDelay{};
    return true;
  }
  if (absl::ConsumePrefix(&text, "p")) {
    double p = 0;
    if (!absl::SimpleAtod(text, &p)) {
      *error = kWant;
      return false;
    }
    *out = HedgeDelay{.enabled = true, .percentile = p};
    return true;
  }
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) {
    *error = kWant;
    return false;
  }
  *out = HedgeDelay{.enabled = true, .delay = d};
  return true;
}
std::string AbslUnparseFlag(const HedgeDelay& h) {
  if (!h.enabled) return "off";
  if (h.percentile != 0) return absl::StrCat("p", h.percentile);
  return absl::FormatDuration(h.delay);
}

struct AbandonedLoads {
  AbandonPolicy policy = AbandonPolicy::kCancel;
};
bool AbslParseFlag(absl::string_view text, AbandonedLoads* out, std::string* error) {
  if (text == "cancel") {
    out->policy = AbandonPolicy::kCancel;
  } else if (text == "finish") {
    out->policy = AbandonPolicy::kFinish;
  } else {
    *error = "want cancel or finish";
    return false;
  }
  return true;
}
std::string AbslUnparseFlag(const AbandonedLoads& a) {
  return std::string(AbandonPolicyName(a.policy));
}

struct Level {
  LogLevel level = LogLevel::kInfo;
};
bool AbslParseFlag(absl::string_view text, Level* out, std::string* error) {
  for (LogLevel l :
       {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (text == LogLevelName(l)) {
      out->level = l;
      return true;
    }
  }
  *error = "want trace, debug, info, warn or error";
  return false;
}
std::string AbslUnparseFlag(const Level& l) { return std::string(LogLevelName(l.level)); }

struct Format {
  LogFormat format = LogFormat::kText;
};
bool AbslParseFlag(absl::string_view text, Format* out, std::string* error) {
  if (text == "text") {
    out->format = LogFormat::kText;
  } else if (text == "json") {
    out->format = LogFormat::kJson;
  } else {
    *error = "want text or json";
    return false;
  }
  return true;
}
std::string AbslUnparseFlag(const Format& f) { return std::string(LogFormatName(f.format)); }

}  // namespace flightcache::flag_types

namespace {
namespace ft = ::flightcache::flag_types;
// Every default comes from ServerConfig, so the struct stays the one place defaults are written.
const flightcache::ServerConfig kDefaults;

ft::HedgeDelay DefaultHedgeDelay() {
  const flightcache::HedgeOptions& h = kDefaults.cache.hedge;
  return ft::HedgeDelay{.enabled = h.enabled, .delay = h.delay, .percentile = h.percentile};
}
}  // namespace

ABSL_FLAG(std::string, listen, kDefaults.listen,
          "gRPC listen address: HOST:PORT, [IPV6]:PORT or unix:PATH (port 0: any free port)");
ABSL_FLAG(ft::FileMode, listen_socket_mode, ft::FileMode{kDefaults.listen_socket_mode},
          "with --listen=unix:PATH, the socket file's mode (octal, at most 0777): who may "
          "connect; set before the socket appears at PATH");
ABSL_FLAG(std::string, origin, kDefaults.origin,
          "the origin: grpc://HOST:PORT (or grpc://HOST:PORT,HOST:PORT,... for replicas), "
          "grpcs://... for TLS, or "
          "sim://?latency_ms=20&jitter_ms=5&value_bytes=128&error_rate=0&not_found_rate=0 (the "
          "built-in simulated origin)");
ABSL_FLAG(std::string, origin_tls_ca_file, kDefaults.origin_tls.ca_file,
          "with a grpcs:// origin, the CA certificates (PEM) its certificate must be signed by; "
          "empty: the system's roots");
ABSL_FLAG(std::string, origin_tls_cert_file, kDefaults.origin_tls.cert_file,
          "with a grpcs:// origin, this sidecar's client certificate chain (PEM) for mTLS; needs "
          "--origin-tls-key-file");
ABSL_FLAG(std::string, origin_tls_key_file, kDefaults.origin_tls.key_file,
          "the key of --origin-tls-cert-file (PEM, unencrypted)");
ABSL_FLAG(ft::Count, origin_eject_after, ft::Count{kDefaults.origin_replicas.eject_after},
          "with several grpc:// replicas, consecutive failed fetches that leave a replica out "
          "for 10 s (doubling on each repeat, up to 5 min; never the last one); 0: never");
ABSL_FLAG(ft::Duration, origin_dns_refresh, ft::Duration{kDefaults.origin_dns_refresh},
          "with --origin=grpc://dns:///NAME:PORT, how often NAME is resolved again (its "
          "addresses are the replicas; a failed resolution keeps the last ones)");
ABSL_FLAG(bool, origin_hedge_other_replica, kDefaults.origin_replicas.hedge_to_other_replica,
          "with several replicas, send a hedge to another replica than its primary's (false: to "
          "the primary's own replica; only to measure what this buys)");
ABSL_FLAG(ft::Duration, ttl, ft::Duration{kDefaults.cache.default_ttl},
          "TTL of a value whose origin response has ttl_ms 0");
ABSL_FLAG(ft::Duration, negative_ttl, ft::Duration{kDefaults.cache.negative_ttl},
          "how long a NOT_FOUND is cached (0 disables negative caching)");
ABSL_FLAG(ft::Duration, stale_while_revalidate,
          ft::Duration{kDefaults.cache.stale_while_revalidate},
          "serve a value up to this long past its TTL at once while one background refresh runs "
          "(0: off)");
ABSL_FLAG(ft::Duration, stale_if_error, ft::Duration{kDefaults.cache.stale_if_error},
          "when a load fails, serve a value up to this long past its TTL instead of the error "
          "(0: off)");
ABSL_FLAG(ft::Fraction, refresh_ahead, ft::Fraction{kDefaults.cache.refresh_ahead},
          "a hit on a value older than this fraction of its TTL starts a background refresh "
          "(0: off; below 1)");
ABSL_FLAG(ft::ByteSize, capacity_bytes, ft::ByteSize{kDefaults.cache.store.capacity_bytes},
          "cache capacity: keys, values and per-entry overhead");
ABSL_FLAG(ft::Duration, load_timeout, ft::Duration{kDefaults.cache.load_timeout},
          "a load's own timeout, independent of every caller's deadline");
ABSL_FLAG(ft::AbandonedLoads, abandoned_loads, ft::AbandonedLoads{kDefaults.cache.abandoned_loads},
          "when the last waiter of a load leaves: cancel the load, or finish it to fill the cache");
ABSL_FLAG(ft::HedgeDelay, hedge_delay, DefaultHedgeDelay(),
          "send a hedge fetch after this delay: off, a duration (20ms), or a percentile of recent "
          "origin latencies (p95)");
ABSL_FLAG(ft::Fraction, hedge_budget, ft::Fraction{kDefaults.cache.hedge.budget},
          "hedge tokens earned per primary fetch (a hedge costs 1; the bucket holds 10)");
ABSL_FLAG(ft::ConcurrencyLimit, max_concurrent_loads,
          ft::ConcurrencyLimit{.fixed = kDefaults.cache.max_concurrent_loads},
          "origin fetches in flight at most, hedges included: a number, or adaptive[:MIN-MAX] "
          "(found from the origin's latency as it runs; default range 4-256)");
ABSL_FLAG(ft::Count, max_queued_loads, ft::Count{kDefaults.cache.max_queued_loads},
          "loads waiting for a fetch permit at most; beyond it, RESOURCE_EXHAUSTED");
ABSL_FLAG(ft::Duration, load_queue_lifo_after, ft::Duration{kDefaults.cache.load_queue_lifo_after},
          "while the oldest queued load has waited longer than this, a free fetch permit goes to "
          "the newest queued load (adaptive LIFO: under a backlog, serve callers who can still "
          "use the answer); 0: first in, first out always");
ABSL_FLAG(ft::ByteSize, max_key_bytes, ft::ByteSize{kDefaults.cache.max_key_bytes},
          "longest key accepted (longer: INVALID_ARGUMENT)");
ABSL_FLAG(ft::ByteSize, max_value_bytes, ft::ByteSize{kDefaults.cache.max_value_bytes},
          "largest origin value accepted (larger: RESOURCE_EXHAUSTED)");
ABSL_FLAG(ft::Count, max_batch_keys, ft::Count{kDefaults.max_batch_keys},
          "most keys in one BatchGet or Invalidate");
ABSL_FLAG(ft::Count, max_concurrent_streams, ft::Count{kDefaults.max_concurrent_streams},
          "HTTP/2 streams (calls) one client connection may have open at once");
ABSL_FLAG(ft::ByteSize, grpc_memory_limit, ft::ByteSize{kDefaults.grpc_memory_limit_bytes},
          "memory gRPC's transports and calls may use (its resource quota); not the cache");
ABSL_FLAG(ft::Duration, keepalive_min_time, ft::Duration{kDefaults.keepalive_min_time},
          "a client may send keepalive pings at most this often while the server sends it "
          "nothing; the third ping too soon closes its connection (GOAWAY too_many_pings)");
ABSL_FLAG(ft::Duration, max_connection_age, ft::Duration{kDefaults.max_connection_age},
          "close client connections after this long (+-10%; GOAWAY: clients reconnect); 0: off, "
          "as a sidecar's clients are local");
ABSL_FLAG(ft::Duration, max_connection_age_grace, ft::Duration{kDefaults.max_connection_age_grace},
          "how long calls in flight on a connection past --max-connection-age may take to finish "
          "before it is closed (above --load-timeout)");
ABSL_FLAG(std::string, metrics_listen, kDefaults.metrics_listen,
          "Prometheus /metrics address HOST:PORT; empty disables it");
ABSL_FLAG(ft::Duration, drain_timeout, ft::Duration{kDefaults.drain_timeout},
          "on SIGTERM/SIGINT, how long calls in flight may take to finish");
ABSL_FLAG(ft::Duration, cancelled_fetch_grace, ft::Duration{kDefaults.cancelled_fetch_grace},
          "how long a grpc:// origin fetch the sidecar cancelled still counts against "
          "--max-concurrent-loads (the time the origin takes to see the cancellation; 0: none)");
ABSL_FLAG(ft::Level, log_level, ft::Level{kDefaults.log_level},
          "trace, debug, info, warn or error");
ABSL_FLAG(ft::Format, log_format, ft::Format{kDefaults.log_format},
          "text, or json (one JSON object per line)");
ABSL_FLAG(std::string, fleet, kDefaults.fleet,
          "the Redis the sidecars of a fleet share, redis://HOST:PORT[/DB]; empty: off (this "
          "sidecar caches alone)");
ABSL_FLAG(ft::Duration, fleet_timeout, ft::Duration{kDefaults.fleet_timeout},
          "every Redis call of the fleet tier is answered within this (slower: go on alone)");
ABSL_FLAG(ft::Duration, fleet_lease_ttl, ft::Duration{kDefaults.cache.fleet.lease_ttl},
          "how long a key's fleet lease lasts unless renewed (a dead loader holds its key back "
          "this long)");
ABSL_FLAG(ft::ByteSize, fleet_max_value_bytes, ft::ByteSize{kDefaults.cache.fleet.max_value_bytes},
          "largest value stored in Redis; larger ones each sidecar loads itself");
ABSL_FLAG(std::string, fleet_key_prefix, kDefaults.fleet_key_prefix,
          "put before every Redis key and channel of this fleet (no '{' or '}')");
ABSL_FLAG(std::string, fleet_password_file, kDefaults.fleet_password_file,
          "file holding Redis' password, read at start-up (the password is never logged)");
ABSL_FLAG(std::string, admin_token_file, kDefaults.admin_token_file,
          "file holding the token Invalidate needs (authorization: Bearer <token>), read at "
          "start-up; empty: Invalidate only from loopback and unix-socket peers");
ABSL_FLAG(std::string, tls_cert_file, kDefaults.tls.cert_file,
          "serve gRPC over TLS with this certificate chain (PEM, leaf first); re-read when it "
          "changes");
ABSL_FLAG(std::string, tls_key_file, kDefaults.tls.key_file,
          "the key of --tls-cert-file (PEM, unencrypted); re-read when it changes");
ABSL_FLAG(std::string, tls_client_ca_file, kDefaults.tls.client_ca_file,
          "require client certificates signed by these CAs (mTLS; PEM); needs --tls-cert-file");
ABSL_FLAG(bool, check_config, false,
          "validate the configuration (flags, environment, origin URL, listen addresses), print "
          "it and exit 0 without binding anything");

namespace flightcache {
namespace {

using support::DashedFlagName;
using support::FlagEnvName;
using support::FlagSpec;

// Our flags, in --help order. Only these are settable here: flags linked in from libraries
// (Abseil's own, say) are unknown flags to the server. Every setting falls back to the
// environment; --check-config is an action, not a setting.
constexpr FlagSpec kFlags[] = {
    {"listen", true},
    {"listen_socket_mode", true},
    {"origin", true},
    {"origin_tls_ca_file", true},
    {"origin_tls_cert_file", true},
    {"origin_tls_key_file", true},
    {"origin_eject_after", true},
    {"origin_dns_refresh", true},
    {"origin_hedge_other_replica", true},
    {"ttl", true},
    {"negative_ttl", true},
    {"stale_while_revalidate", true},
    {"stale_if_error", true},
    {"refresh_ahead", true},
    {"capacity_bytes", true},
    {"load_timeout", true},
    {"abandoned_loads", true},
    {"hedge_delay", true},
    {"hedge_budget", true},
    {"max_concurrent_loads", true},
    {"max_queued_loads", true},
    {"load_queue_lifo_after", true},
    {"max_key_bytes", true},
    {"max_value_bytes", true},
    {"max_batch_keys", true},
    {"max_concurrent_streams", true},
    {"grpc_memory_limit", true},
    {"keepalive_min_time", true},
    {"max_connection_age", true},
    {"max_connection_age_grace", true},
    {"metrics_listen", true},
    {"drain_timeout", true},
    {"cancelled_fetch_grace", true},
    {"log_level", true},
    {"log_format", true},
    {"fleet", true},
    {"fleet_timeout", true},
    {"fleet_lease_ttl", true},
    {"fleet_max_value_bytes", true},
    {"fleet_key_prefix", true},
    {"fleet_password_file", true},
    {"admin_token_file", true},
    {"tls_cert_file", true},
    {"tls_key_file", true},
    {"tls_client_ca_file", true},
    {"check_config", false},
};

ServerConfig ConfigFromFlags() {
  ServerConfig c;
  c.listen = absl::GetFlag(FLAGS_listen);
  c.listen_socket_mode = absl::GetFlag(FLAGS_listen_socket_mode).mode;
  c.origin = absl::GetFlag(FLAGS_origin);
  c.origin_tls.ca_file = absl::GetFlag(FLAGS_origin_tls_ca_file);
  c.origin_tls.cert_file = absl::GetFlag(FLAGS_origin_tls_cert_file);
  c.origin_tls.key_file = absl::GetFlag(FLAGS_origin_tls_key_file);
  c.origin_replicas.eject_after = absl::GetFlag(FLAGS_origin_eject_after).value;
  c.origin_replicas.hedge_to_other_replica = absl::GetFlag(FLAGS_origin_hedge_other_replica);
  c.origin_dns_refresh = absl::GetFlag(FLAGS_origin_dns_refresh).value;
  c.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  c.drain_timeout = absl::GetFlag(FLAGS_drain_timeout).value;
  c.cancelled_fetch_grace = absl::GetFlag(FLAGS_cancelled_fetch_grace).value;
  c.max_batch_keys = absl::GetFlag(FLAGS_max_batch_keys).value;
  c.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams).value;
  c.grpc_memory_limit_bytes = absl::GetFlag(FLAGS_grpc_memory_limit).bytes;
  c.keepalive_min_time = absl::GetFlag(FLAGS_keepalive_min_time).value;
  c.max_connection_age = absl::GetFlag(FLAGS_max_connection_age).value;
  c.max_connection_age_grace = absl::GetFlag(FLAGS_max_connection_age_grace).value;
  c.log_level = absl::GetFlag(FLAGS_log_level).level;
  c.log_format = absl::GetFlag(FLAGS_log_format).format;
  c.cache.default_ttl = absl::GetFlag(FLAGS_ttl).value;
  c.cache.negative_ttl = absl::GetFlag(FLAGS_negative_ttl).value;
  c.cache.stale_while_revalidate = absl::GetFlag(FLAGS_stale_while_revalidate).value;
  c.cache.stale_if_error = absl::GetFlag(FLAGS_stale_if_error).value;
  c.cache.refresh_ahead = absl::GetFlag(FLAGS_refresh_ahead).value;
  c.cache.store.capacity_bytes = absl::GetFlag(FLAGS_capacity_bytes).bytes;
  c.cache.load_timeout = absl::GetFlag(FLAGS_load_timeout).value;
  c.cache.abandoned_loads = absl::GetFlag(FLAGS_abandoned_loads).policy;
  const ft::HedgeDelay hedge = absl::GetFlag(FLAGS_hedge_delay);
  c.cache.hedge.enabled = hedge.enabled;
  if (hedge.percentile != 0) {
    c.cache.hedge.percentile = hedge.percentile;
  } else if (hedge.enabled) {
    c.cache.hedge.delay = hedge.delay;
  }
  c.cache.hedge.budget = absl::GetFlag(FLAGS_hedge_budget).value;
  const ft::ConcurrencyLimit concurrency = absl::GetFlag(FLAGS_max_concurrent_loads);
  if (concurrency.adaptive) {
    c.cache.adaptive_concurrency = concurrency.adaptive;
  } else {
    c.cache.max_concurrent_loads = concurrency.fixed;
  }
  c.cache.max_queued_loads = absl::GetFlag(FLAGS_max_queued_loads).value;
  c.cache.load_queue_lifo_after = absl::GetFlag(FLAGS_load_queue_lifo_after).value;
  c.cache.max_key_bytes = absl::GetFlag(FLAGS_max_key_bytes).bytes;
  c.cache.max_value_bytes = absl::GetFlag(FLAGS_max_value_bytes).bytes;
  c.fleet = absl::GetFlag(FLAGS_fleet);
  c.fleet_timeout = absl::GetFlag(FLAGS_fleet_timeout).value;
  c.cache.fleet.lease_ttl = absl::GetFlag(FLAGS_fleet_lease_ttl).value;
  c.cache.fleet.max_value_bytes = absl::GetFlag(FLAGS_fleet_max_value_bytes).bytes;
  c.fleet_key_prefix = absl::GetFlag(FLAGS_fleet_key_prefix);
  c.fleet_password_file = absl::GetFlag(FLAGS_fleet_password_file);
  c.admin_token_file = absl::GetFlag(FLAGS_admin_token_file);
  c.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  c.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  c.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  return c;
}

}  // namespace

absl::StatusOr<CommandLine> ParseServerCommandLine(int argc, const char* const* argv,
                                                   const support::EnvLookup& env) {
  const std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  absl::StatusOr<support::ParsedFlags> parsed =
      support::ParseFlags(args, {.flags = kFlags,
                                 .env = env,
                                 .wording = support::FlagWording::kServer,
                                 .version_flag = true});
  if (!parsed.ok()) return parsed.status();
  if (!parsed->positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", parsed->positional.front(),
                     "': flightcache-server takes only flags (--name=value)"));
  }
  CommandLine out;
  out.help = parsed->help;
  out.version = parsed->version;
  out.config = ConfigFromFlags();
  out.check_config = absl::GetFlag(FLAGS_check_config);
  out.from_env = std::move(parsed->from_env);
  return out;
}

std::string NameErrorSource(const CommandLine& command_line, absl::string_view message) {
  absl::string_view rest = message;
  if (!absl::ConsumePrefix(&rest, "--")) return std::string(message);
  const size_t colon = rest.find(':');
  if (colon == absl::string_view::npos) return std::string(message);
  std::string name(rest.substr(0, colon));
  std::replace(name.begin(), name.end(), '-', '_');
  const std::vector<std::string>& from_env = command_line.from_env;
  if (std::find(from_env.begin(), from_env.end(), name) == from_env.end()) {
    return std::string(message);
  }
  return absl::StrCat(message, " (from ", FlagEnvName(name), ")");
}

std::string ServerUsage(absl::string_view program) {
  std::string usage = absl::StrCat(
      "Usage: ", program, " [--flag=value ...]\n\n",
      "flightcache-server: a request-coalescing cache sidecar (gRPC flightcache.v1.Cache).\n"
      "Every flag not given falls back to the environment variable FLIGHTCACHE_<NAME>\n"
      "(e.g. FLIGHTCACHE_LISTEN). Durations take units (250ms, 5s, 1m); sizes are bytes,\n"
      "optionally with KiB/MiB/GiB. A bad flag or value exits with status 2.\n\nFlags:\n");
  for (const FlagSpec& spec : kFlags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(spec.name);
    if (flag == nullptr) continue;
    absl::StrAppend(&usage, "  --", DashedFlagName(spec.name), "\n      ", flag->Help(),
                    "\n      default: '", flag->DefaultValue(), "'",
                    spec.from_env ? absl::StrCat("; env ", FlagEnvName(spec.name)) : "", "\n");
  }
  absl::StrAppend(&usage, "  --help, --version\n");
  return usage;
}

}  // namespace flightcache
