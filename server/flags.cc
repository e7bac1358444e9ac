#include "server/flags.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

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
ABSL_FLAG(std::string, origin, kDefaults.origin,
          "the origin: grpc://HOST:PORT, or sim://?latency_ms=20&jitter_ms=5&value_bytes=128&"
          "error_rate=0&not_found_rate=0 (the built-in simulated origin)");
ABSL_FLAG(ft::Duration, ttl, ft::Duration{kDefaults.cache.default_ttl},
          "TTL of a value whose origin response has ttl_ms 0");
ABSL_FLAG(ft::Duration, negative_ttl, ft::Duration{kDefaults.cache.negative_ttl},
          "how long a NOT_FOUND is cached (0 disables negative caching)");
ABSL_FLAG(ft::ByteSize, capacity_bytes, ft::ByteSize{kDefaults.cache.cache.capacity_bytes},
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
ABSL_FLAG(ft::Count, max_concurrent_loads, ft::Count{kDefaults.cache.max_concurrent_loads},
          "origin fetches in flight at most, hedges included");
ABSL_FLAG(ft::Count, max_queued_loads, ft::Count{kDefaults.cache.max_queued_loads},
          "loads waiting for a fetch permit at most; beyond it, RESOURCE_EXHAUSTED");
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
ABSL_FLAG(bool, check_config, false,
          "validate the configuration (flags, environment, origin URL, listen addresses), print "
          "it and exit 0 without binding anything");

namespace flightcache {
namespace {

struct FlagEntry {
  absl::string_view name;  // the ABSL_FLAG name (underscores)
  bool from_env;           // falls back to FLIGHTCACHE_<NAME>
};

// Our flags, in --help order. Lookups go through this table so that flags linked in from
// libraries (Abseil's own, say) are not settable here.
constexpr FlagEntry kFlags[] = {
    {"listen", true},
    {"origin", true},
    {"ttl", true},
    {"negative_ttl", true},
    {"capacity_bytes", true},
    {"load_timeout", true},
    {"abandoned_loads", true},
    {"hedge_delay", true},
    {"hedge_budget", true},
    {"max_concurrent_loads", true},
    {"max_queued_loads", true},
    {"max_key_bytes", true},
    {"max_value_bytes", true},
    {"max_batch_keys", true},
    {"max_concurrent_streams", true},
    {"grpc_memory_limit", true},
    {"metrics_listen", true},
    {"drain_timeout", true},
    {"cancelled_fetch_grace", true},
    {"log_level", true},
    {"log_format", true},
    {"check_config", false},
};

std::string Dashed(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

absl::CommandLineFlag* Lookup(absl::string_view name) {
  for (const FlagEntry& entry : kFlags) {
    if (entry.name == name) return absl::FindCommandLineFlag(name);
  }
  return nullptr;
}

// Abseil's own parse errors start with "Illegal value '...' specified for flag '...'", which
// repeats what our message already says; keep only the explanation after it.
std::string Explain(absl::string_view error) {
  if (absl::StartsWith(error, "Illegal value")) {
    const size_t sep = error.find("; ");
    if (sep == absl::string_view::npos) return "";
    error.remove_prefix(sep + 2);
  }
  return std::string(error);
}

absl::Status BadValue(absl::string_view name, absl::string_view value, absl::string_view origin,
                      absl::string_view error) {
  const std::string why = Explain(error);
  return absl::InvalidArgumentError(absl::StrCat("--", Dashed(name), ": invalid value '", value,
                                                 "'", origin, why.empty() ? "" : ": ", why));
}

absl::Status ResetToDefaults() {
  for (const FlagEntry& entry : kFlags) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(entry.name);
    if (flag == nullptr) {
      return absl::InternalError(absl::StrCat("flag --", Dashed(entry.name), " is not linked in"));
    }
    std::string error;
    if (!flag->ParseFrom(flag->DefaultValue(), &error)) {
      return absl::InternalError(absl::StrCat("cannot reset --", Dashed(entry.name), ": ", error));
    }
  }
  return absl::OkStatus();
}

ServerConfig ConfigFromFlags() {
  ServerConfig c;
  c.listen = absl::GetFlag(FLAGS_listen);
  c.origin = absl::GetFlag(FLAGS_origin);
  c.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  c.drain_timeout = absl::GetFlag(FLAGS_drain_timeout).value;
  c.cancelled_fetch_grace = absl::GetFlag(FLAGS_cancelled_fetch_grace).value;
  c.max_batch_keys = absl::GetFlag(FLAGS_max_batch_keys).value;
  c.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams).value;
  c.grpc_memory_limit_bytes = absl::GetFlag(FLAGS_grpc_memory_limit).bytes;
  c.log_level = absl::GetFlag(FLAGS_log_level).level;
  c.log_format = absl::GetFlag(FLAGS_log_format).format;
  c.cache.default_ttl = absl::GetFlag(FLAGS_ttl).value;
  c.cache.negative_ttl = absl::GetFlag(FLAGS_negative_ttl).value;
  c.cache.cache.capacity_bytes = absl::GetFlag(FLAGS_capacity_bytes).bytes;
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
  c.cache.max_concurrent_loads = absl::GetFlag(FLAGS_max_concurrent_loads).value;
  c.cache.max_queued_loads = absl::GetFlag(FLAGS_max_queued_loads).value;
  c.cache.max_key_bytes = absl::GetFlag(FLAGS_max_key_bytes).bytes;
  c.cache.max_value_bytes = absl::GetFlag(FLAGS_max_value_bytes).bytes;
  return c;
}

}  // namespace

std::optional<std::string> ProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::string FlagEnvName(absl::string_view flag_name) {
  return absl::StrCat("FLIGHTCACHE_",
                      absl::AsciiStrToUpper(absl::StrReplaceAll(flag_name, {{"-", "_"}})));
}

absl::StatusOr<CommandLine> ParseServerCommandLine(int argc, const char* const* argv,
                                                   const EnvLookup& env) {
  if (absl::Status s = ResetToDefaults(); !s.ok()) return s;
  CommandLine out;
  absl::flat_hash_set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      if (i + 1 < argc) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", argv[i + 1],
                                                       "': flightcache-server takes only flags"));
      }
      break;
    }
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected argument '", arg, "': flightcache-server takes only flags (--name=value)"));
    }
    absl::string_view value;
    bool has_value = false;
    absl::string_view typed = arg;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      typed = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    std::string name = absl::StrReplaceAll(typed, {{"-", "_"}});
    if (name == "help" || name == "h" || name == "helpfull") {
      out.help = true;
      continue;
    }
    if (name == "version") {
      out.version = true;
      continue;
    }
    absl::CommandLineFlag* flag = Lookup(name);
    if (flag == nullptr && absl::StartsWith(name, "no") && !has_value) {
      // --nocheck-config / --no-check-config for a bool flag.
      std::string positive = name.substr(absl::StartsWith(name, "no_") ? 3 : 2);
      absl::CommandLineFlag* candidate = Lookup(positive);
      if (candidate != nullptr && candidate->IsOfType<bool>()) {
        flag = candidate;
        name = std::move(positive);
        value = "false";
        has_value = true;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", Dashed(name), ": unknown flag (see --help)"));
    }
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("--", Dashed(name), ": missing value (write --", Dashed(name), "=VALUE)"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) return BadValue(name, value, "", error);
    given.insert(name);
  }
  for (const FlagEntry& entry : kFlags) {
    if (!entry.from_env || given.contains(entry.name)) continue;
    const std::string var = FlagEnvName(entry.name);
    const std::optional<std::string> value = env(var);
    if (!value.has_value()) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(entry.name);
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return BadValue(entry.name, *value, absl::StrCat(" (from ", var, ")"), error);
    }
  }
  out.config = ConfigFromFlags();
  out.check_config = absl::GetFlag(FLAGS_check_config);
  return out;
}

std::string ServerUsage(absl::string_view program) {
  std::string usage = absl::StrCat(
      "Usage: ", program, " [--flag=value ...]\n\n",
      "flightcache-server: a request-coalescing cache sidecar (gRPC flightcache.v1.Cache).\n"
      "Every flag not given falls back to the environment variable FLIGHTCACHE_<NAME>\n"
      "(e.g. FLIGHTCACHE_LISTEN). Durations take units (250ms, 5s, 1m); sizes are bytes,\n"
      "optionally with KiB/MiB/GiB. A bad flag or value exits with status 2.\n\nFlags:\n");
  for (const FlagEntry& entry : kFlags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(entry.name);
    if (flag == nullptr) continue;
    absl::StrAppend(&usage, "  --", Dashed(entry.name), "\n      ", flag->Help(),
                    "\n      default: '", flag->DefaultValue(), "'",
                    entry.from_env ? absl::StrCat("; env ", FlagEnvName(entry.name)) : "", "\n");
  }
  absl::StrAppend(&usage, "  --help, --version\n");
  return usage;
}

}  // namespace flightcache
