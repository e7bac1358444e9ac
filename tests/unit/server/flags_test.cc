// server/flags.cc and server/config.cc: flags and FLIGHTCACHE_* environment fallbacks mapped onto
// ServerConfig, and ServerConfig::Validate() naming the flag at fault.
#include "server/flags.h"

#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class FlagsTest : public ::testing::Test {
 protected:
  absl::StatusOr<CommandLine> Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "flightcache-server");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    return ParseServerCommandLine(static_cast<int>(argv.size()), argv.data(),
                                  [this](const std::string& name) -> std::optional<std::string> {
                                    auto it = env_.find(name);
                                    if (it == env_.end()) return std::nullopt;
                                    return it->second;
                                  });
  }

  // The message of a parse that must fail, or of Validate() if parsing passed.
  std::string Error(std::vector<std::string> args) {
    absl::StatusOr<CommandLine> cl = Parse(std::move(args));
    if (!cl.ok()) return std::string(cl.status().message());
    absl::Status s = cl->config.Validate();
    return s.ok() ? "" : std::string(s.message());
  }

  std::map<std::string, std::string> env_;
};

TEST_F(FlagsTest, NoFlagsGiveTheSpecDefaults) {
  absl::StatusOr<CommandLine> cl = Parse({});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const ServerConfig& c = cl->config;
  EXPECT_EQ(c.listen, "127.0.0.1:50051");
  EXPECT_EQ(c.origin, kDefaultOrigin);
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(c.cache.default_ttl, absl::Seconds(60));
  EXPECT_EQ(c.cache.negative_ttl, absl::Seconds(5));
  EXPECT_EQ(c.cache.store.capacity_bytes, int64_t{256} << 20);
  EXPECT_EQ(c.cache.load_timeout, absl::Seconds(5));
  EXPECT_EQ(c.cache.abandoned_loads, AbandonPolicy::kCancel);
  EXPECT_FALSE(c.cache.hedge.enabled);
  EXPECT_DOUBLE_EQ(c.cache.hedge.budget, 0.05);
  EXPECT_EQ(c.cache.max_concurrent_loads, 64);
  EXPECT_EQ(c.cache.max_queued_loads, 10000);
  EXPECT_EQ(c.cache.max_key_bytes, 4096);
  EXPECT_EQ(c.cache.max_value_bytes, int64_t{4} << 20);
  EXPECT_EQ(c.max_batch_keys, 1000);
  EXPECT_EQ(c.max_concurrent_streams, 10000);
  EXPECT_EQ(c.grpc_memory_limit_bytes, int64_t{1} << 30);
  EXPECT_EQ(c.drain_timeout, absl::Seconds(10));
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_EQ(c.log_format, LogFormat::kText);
  EXPECT_EQ(c.fleet, "");
  EXPECT_EQ(c.fleet_timeout, absl::Milliseconds(20));
  EXPECT_EQ(c.cache.fleet.lease_ttl, absl::Seconds(2));
  EXPECT_EQ(c.cache.fleet.max_value_bytes, int64_t{1} << 20);
  EXPECT_EQ(c.fleet_key_prefix, "fc:");
  EXPECT_EQ(c.fleet_password_file, "");
  EXPECT_EQ(c.listen_socket_mode, 0660);
  EXPECT_EQ(c.origin_tls.ca_file, "");
  EXPECT_EQ(c.origin_tls.cert_file, "");
  EXPECT_EQ(c.origin_tls.key_file, "");
  EXPECT_EQ(c.keepalive_min_time, absl::Minutes(5));
  EXPECT_EQ(c.max_connection_age, absl::ZeroDuration());
  EXPECT_EQ(c.max_connection_age_grace, absl::Seconds(10));
  EXPECT_FALSE(cl->check_config);
  EXPECT_TRUE(c.Validate().ok());
}

TEST_F(FlagsTest, OriginTlsFlagsMapOntoTheConfigWithTheEnvironmentAsFallback) {
  env_["FLIGHTCACHE_ORIGIN_TLS_KEY_FILE"] = "/etc/fc/origin-client.key";
  absl::StatusOr<CommandLine> cl = Parse({"--origin=grpcs://origin.internal:9443,10.0.0.8:9443",
                                          "--origin-tls-ca-file=/etc/fc/origin-ca.pem",
                                          "--origin-tls-cert-file=/etc/fc/origin-client.pem"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const ServerConfig& c = cl->config;
  EXPECT_EQ(c.origin_tls.flag_prefix, "--origin-tls");
  EXPECT_EQ(c.origin_tls.ca_file, "/etc/fc/origin-ca.pem");
  EXPECT_EQ(c.origin_tls.cert_file, "/etc/fc/origin-client.pem");
  EXPECT_EQ(c.origin_tls.key_file, "/etc/fc/origin-client.key");
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();  // the files are read at start-up, not here
  const std::string line = c.Describe();
  EXPECT_THAT(line, HasSubstr("origin=grpcs://origin.internal:9443,10.0.0.8:9443"));
  EXPECT_THAT(line, HasSubstr("origin-tls-ca-file=/etc/fc/origin-ca.pem"));
  EXPECT_THAT(line, HasSubstr("origin-tls-cert-file=/etc/fc/origin-client.pem"));
  EXPECT_THAT(line, HasSubstr("origin-tls-key-file=/etc/fc/origin-client.key"));
  // grpcs:// alone: the system's roots, no client certificate.
  env_.clear();
  cl = Parse({"--origin=grpcs://origin.internal:9443"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_TRUE(cl->config.Validate().ok()) << cl->config.Validate();
  EXPECT_THAT(cl->config.Describe(), HasSubstr("origin-tls-ca-file=(none: system roots)"));
}

// A TLS file for a plaintext origin would look like TLS and be plaintext: refused, naming it.
TEST_F(FlagsTest, OriginTlsFlagsNeedAGrpcsOriginAndCertAndKeyTogether) {
  for (const char* flag :
       {"--origin-tls-ca-file", "--origin-tls-cert-file", "--origin-tls-key-file"}) {
    for (const char* origin : {"--origin=grpc://origin:9000", "--origin=sim://"}) {
      EXPECT_EQ(Error({origin, absl::StrCat(flag, "=/etc/fc/x.pem")}),
                absl::StrCat(flag, ": set, but --origin is not grpcs://"))
          << origin;
    }
  }
  EXPECT_THAT(Error({"--origin=grpcs://origin:9443", "--origin-tls-cert-file=/c.pem"}),
              StartsWith("--origin-tls-key-file: "));
  EXPECT_THAT(Error({"--origin=grpcs://origin:9443", "--origin-tls-key-file=/k.pem"}),
              StartsWith("--origin-tls-cert-file: "));
  EXPECT_THAT(Error({"--origin=grpcs://origin"}), StartsWith("--origin: "));
  EXPECT_THAT(Error({"--origin=grpcs://origin:9443/path"}), StartsWith("--origin: "));
}

TEST_F(FlagsTest, ListenerBoundFlagsMapOntoTheConfig) {
  env_["FLIGHTCACHE_MAX_CONNECTION_AGE_GRACE"] = "45s";
  absl::StatusOr<CommandLine> cl =
      Parse({"--listen=unix:/run/fc/fc.sock", "--listen-socket-mode=0600",
             "--keepalive-min-time=30s", "--max-connection-age=1h"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const ServerConfig& c = cl->config;
  EXPECT_EQ(c.listen_socket_mode, 0600);
  EXPECT_EQ(c.keepalive_min_time, absl::Seconds(30));
  EXPECT_EQ(c.max_connection_age, absl::Hours(1));
  EXPECT_EQ(c.max_connection_age_grace, absl::Seconds(45));
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  const std::string line = c.Describe();
  EXPECT_THAT(line, HasSubstr("listen-socket-mode=0600"));
  EXPECT_THAT(line, HasSubstr("keepalive-min-time=30s"));
  EXPECT_THAT(line, HasSubstr("max-connection-age=1h"));
  EXPECT_THAT(line, HasSubstr("max-connection-age-grace=45s"));
  env_.clear();
  // Octal, as chmod takes it, with or without the leading 0.
  for (const auto& [text, mode] : std::vector<std::pair<std::string, int>>{
           {"660", 0660}, {"0o640", 0640}, {"0", 0}, {"0777", 0777}, {" 0606 ", 0606}}) {
    cl = Parse({"--listen-socket-mode=" + text});
    ASSERT_TRUE(cl.ok()) << text << ": " << cl.status();
    EXPECT_EQ(cl->config.listen_socket_mode, mode) << text;
  }
  EXPECT_THAT(Parse({})->config.Describe(), HasSubstr("max-connection-age=(off)"));
}

TEST_F(FlagsTest, EveryFlagMapsOntoTheConfig) {
  absl::StatusOr<CommandLine> cl = Parse(
      {"--listen=0.0.0.0:7000",     "--origin=grpc://origin:9000", "--ttl=90s",
       "--negative-ttl=0s",         "--capacity-bytes=64MiB",      "--load-timeout=250ms",
       "--abandoned-loads=finish",  "--hedge-delay=20ms",          "--hedge-budget=0.1",
       "--max-concurrent-loads=8",  "--max-queued-loads=0",        "--max-key-bytes=1KiB",
       "--max-value-bytes=1048576", "--max-batch-keys=50",         "--max-concurrent-streams=100",
       "--grpc-memory-limit=64MiB", "--metrics-listen=",           "--drain-timeout=1m",
       "--log-level=debug",         "--log-format=json",           "--check-config"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const ServerConfig& c = cl->config;
  EXPECT_EQ(c.listen, "0.0.0.0:7000");
  EXPECT_EQ(c.origin, "grpc://origin:9000");
  EXPECT_EQ(c.cache.default_ttl, absl::Seconds(90));
  EXPECT_EQ(c.cache.negative_ttl, absl::ZeroDuration());
  EXPECT_EQ(c.cache.store.capacity_bytes, int64_t{64} << 20);
  EXPECT_EQ(c.cache.load_timeout, absl::Milliseconds(250));
  EXPECT_EQ(c.cache.abandoned_loads, AbandonPolicy::kFinish);
  EXPECT_TRUE(c.cache.hedge.enabled);
  EXPECT_EQ(c.cache.hedge.delay, absl::Milliseconds(20));
  EXPECT_EQ(c.cache.hedge.percentile, 0);
  EXPECT_DOUBLE_EQ(c.cache.hedge.budget, 0.1);
  EXPECT_EQ(c.cache.max_concurrent_loads, 8);
  EXPECT_EQ(c.cache.max_queued_loads, 0);
  EXPECT_EQ(c.cache.max_key_bytes, 1024);
  EXPECT_EQ(c.cache.max_value_bytes, 1048576);
  EXPECT_EQ(c.max_batch_keys, 50);
  EXPECT_EQ(c.max_concurrent_streams, 100);
  EXPECT_EQ(c.grpc_memory_limit_bytes, int64_t{64} << 20);
  EXPECT_EQ(c.metrics_listen, "");
  EXPECT_EQ(c.drain_timeout, absl::Minutes(1));
  EXPECT_EQ(c.log_level, LogLevel::kDebug);
  EXPECT_EQ(c.log_format, LogFormat::kJson);
  EXPECT_TRUE(cl->check_config);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

TEST_F(FlagsTest, FleetFlagsMapOntoTheConfigWithTheEnvironmentAsFallback) {
  env_["FLIGHTCACHE_FLEET_KEY_PREFIX"] = "team-a:";
  env_["FLIGHTCACHE_FLEET_TIMEOUT"] = "5ms";
  absl::StatusOr<CommandLine> cl =
      Parse({"--fleet=redis://10.0.0.7:6380/2", "--fleet-timeout=50ms", "--fleet-lease-ttl=5s",
             "--fleet-max-value-bytes=256KiB", "--fleet-password-file=/etc/fc/redis-password"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const ServerConfig& c = cl->config;
  EXPECT_EQ(c.fleet, "redis://10.0.0.7:6380/2");
  EXPECT_EQ(c.fleet_timeout, absl::Milliseconds(50));  // the command line wins
  EXPECT_EQ(c.cache.fleet.lease_ttl, absl::Seconds(5));
  EXPECT_EQ(c.cache.fleet.max_value_bytes, 256 << 10);
  EXPECT_EQ(c.fleet_key_prefix, "team-a:");
  EXPECT_EQ(c.fleet_password_file, "/etc/fc/redis-password");
  // Validate() does not read the password file (FleetRedisOptions does, at start-up).
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  const std::string line = c.Describe();
  EXPECT_THAT(line, HasSubstr("fleet=redis://10.0.0.7:6380/2"));
  EXPECT_THAT(line, HasSubstr("fleet-timeout=50ms"));
  EXPECT_THAT(line, HasSubstr("fleet-lease-ttl=5s"));
  EXPECT_THAT(line, HasSubstr("fleet-key-prefix=team-a:"));
  EXPECT_THAT(Parse({})->config.Describe(), HasSubstr("fleet=(off)"));
}

TEST_F(FlagsTest, OriginReplicasAndTheirEjectionMapOntoTheConfig) {
  EXPECT_EQ(Parse({})->config.origin_replicas.eject_after, 5);
  absl::StatusOr<CommandLine> cl = Parse({"--origin=grpc://a:9000,b:9000", "--origin-eject-after=0",
                                          "--origin-hedge-other-replica=false"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.origin, "grpc://a:9000,b:9000");
  EXPECT_EQ(cl->config.origin_replicas.eject_after, 0);
  EXPECT_FALSE(cl->config.origin_replicas.hedge_to_other_replica);
  EXPECT_TRUE(cl->config.Validate().ok()) << cl->config.Validate();
  EXPECT_THAT(cl->config.Describe(), HasSubstr("origin-eject-after=0"));
}

TEST_F(FlagsTest, StaleServingFlagsMapOntoTheConfig) {
  // Off by default: today's behaviour.
  const ServerConfig defaults = Parse({})->config;
  EXPECT_EQ(defaults.cache.stale_while_revalidate, absl::ZeroDuration());
  EXPECT_EQ(defaults.cache.stale_if_error, absl::ZeroDuration());
  EXPECT_EQ(defaults.cache.refresh_ahead, 0);

  env_["FLIGHTCACHE_STALE_IF_ERROR"] = "1h";
  absl::StatusOr<CommandLine> cl = Parse({"--stale-while-revalidate=30s", "--refresh-ahead=0.8"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const ServerConfig& c = cl->config;
  EXPECT_EQ(c.cache.stale_while_revalidate, absl::Seconds(30));
  EXPECT_EQ(c.cache.stale_if_error, absl::Hours(1));
  EXPECT_DOUBLE_EQ(c.cache.refresh_ahead, 0.8);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  const std::string line = c.Describe();
  EXPECT_THAT(line, HasSubstr("stale-while-revalidate=30s"));
  EXPECT_THAT(line, HasSubstr("stale-if-error=1h"));
  EXPECT_THAT(line, HasSubstr("refresh-ahead=0.8"));
}

TEST_F(FlagsTest, SeparateValuesAndUnderscoresWorkToo) {
  absl::StatusOr<CommandLine> cl = Parse({"--listen", "127.0.0.1:1", "--max_key_bytes=10"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.listen, "127.0.0.1:1");
  EXPECT_EQ(cl->config.cache.max_key_bytes, 10);
}

TEST_F(FlagsTest, HedgeDelayAcceptsOffADurationOrAPercentile) {
  absl::StatusOr<CommandLine> cl = Parse({"--hedge-delay=p95"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->config.cache.hedge.enabled);
  EXPECT_DOUBLE_EQ(cl->config.cache.hedge.percentile, 95);
  EXPECT_EQ(FormatHedgeDelay(cl->config.cache.hedge), "p95");
  cl = Parse({"--hedge-delay=p99.9"});
  ASSERT_TRUE(cl.ok());
  EXPECT_DOUBLE_EQ(cl->config.cache.hedge.percentile, 99.9);
  cl = Parse({"--hedge-delay=off"});
  ASSERT_TRUE(cl.ok());
  EXPECT_FALSE(cl->config.cache.hedge.enabled);
  EXPECT_EQ(FormatHedgeDelay(cl->config.cache.hedge), "off");
  EXPECT_THAT(Error({"--hedge-delay=p100"}), StartsWith("--hedge-delay: "));
  EXPECT_THAT(Error({"--hedge-delay=p0"}), StartsWith("--hedge-delay: "));
  EXPECT_THAT(Error({"--hedge-delay=0ms"}), StartsWith("--hedge-delay: "));
  EXPECT_THAT(Error({"--hedge-delay=soon"}), StartsWith("--hedge-delay: "));
}

TEST_F(FlagsTest, MaxConcurrentLoadsIsANumberOrAdaptiveWithARange) {
  absl::StatusOr<CommandLine> cl = Parse({});
  ASSERT_TRUE(cl.ok());
  EXPECT_FALSE(cl->config.cache.adaptive_concurrency.has_value()) << "fixed unless asked";
  cl = Parse({"--max-concurrent-loads=adaptive"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  ASSERT_TRUE(cl->config.cache.adaptive_concurrency.has_value());
  EXPECT_EQ(cl->config.cache.adaptive_concurrency->min_limit, 4);
  EXPECT_EQ(cl->config.cache.adaptive_concurrency->max_limit, 256);
  EXPECT_EQ(FormatConcurrencyLimit(cl->config.cache), "adaptive:4-256");
  env_["FLIGHTCACHE_MAX_CONCURRENT_LOADS"] = "adaptive:2-32";
  cl = Parse({});
  ASSERT_TRUE(cl.ok()) << cl.status();
  ASSERT_TRUE(cl->config.cache.adaptive_concurrency.has_value());
  EXPECT_EQ(cl->config.cache.adaptive_concurrency->min_limit, 2);
  EXPECT_EQ(cl->config.cache.adaptive_concurrency->max_limit, 32);
  EXPECT_THAT(cl->config.Describe(), HasSubstr("max-concurrent-loads=adaptive:2-32"));
  env_.clear();
  cl = Parse({"--max-concurrent-loads=12"});
  ASSERT_TRUE(cl.ok());
  EXPECT_FALSE(cl->config.cache.adaptive_concurrency.has_value());
  EXPECT_EQ(FormatConcurrencyLimit(cl->config.cache), "12");
  for (const char* bad :
       {"--max-concurrent-loads=adaptive:8",
        "--max-concurrent-loads=adaptive:", "--max-concurrent-loads=adaptive:a-b",
        "--max-concurrent-loads=adaptivex", "--max-concurrent-loads=adaptive:8-4",
        "--max-concurrent-loads=adaptive:0-4", "--max-concurrent-loads=adaptive:1-1000001"}) {
    EXPECT_THAT(Error({bad}), StartsWith("--max-concurrent-loads: ")) << bad;
  }
}

TEST_F(FlagsTest, EnvironmentIsTheFallbackForFlagsNotGiven) {
  env_["FLIGHTCACHE_LISTEN"] = "127.0.0.1:6000";
  env_["FLIGHTCACHE_TTL"] = "2m";
  env_["FLIGHTCACHE_HEDGE_DELAY"] = "p90";
  env_["FLIGHTCACHE_METRICS_LISTEN"] = "";
  env_["FLIGHTCACHE_CHECK_CONFIG"] = "true";  // an action, not a setting: ignored
  absl::StatusOr<CommandLine> cl = Parse({"--ttl=3s"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.listen, "127.0.0.1:6000");
  EXPECT_EQ(cl->config.cache.default_ttl, absl::Seconds(3));  // the command line wins
  EXPECT_DOUBLE_EQ(cl->config.cache.hedge.percentile, 90);
  EXPECT_EQ(cl->config.metrics_listen, "");
  EXPECT_FALSE(cl->check_config);
}

TEST_F(FlagsTest, BadEnvironmentValueNamesTheFlagAndTheVariable) {
  env_["FLIGHTCACHE_MAX_KEY_BYTES"] = "lots";
  const std::string error = Error({});
  EXPECT_THAT(error, StartsWith("--max-key-bytes: invalid value 'lots'"));
  EXPECT_THAT(error, HasSubstr("FLIGHTCACHE_MAX_KEY_BYTES"));
}

TEST_F(FlagsTest, AnOutOfBoundsEnvironmentValueNamesTheVariableToo) {
  env_["FLIGHTCACHE_LOAD_TIMEOUT"] = "100h";
  env_["FLIGHTCACHE_TTL"] = "2m";
  absl::StatusOr<CommandLine> cl = Parse({});
  ASSERT_TRUE(cl.ok()) << cl.status();
  const absl::Status invalid = cl->config.Validate();
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(NameErrorSource(*cl, invalid.message()),
            "--load-timeout: must be at most 24h, got 100h (from FLIGHTCACHE_LOAD_TIMEOUT)");
  // The same bound broken on the command line: the flag alone is named.
  cl = Parse({"--load-timeout=100h"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(NameErrorSource(*cl, cl->config.Validate().message()),
            "--load-timeout: must be at most 24h, got 100h");
  // Not an error about one flag: unchanged.
  EXPECT_EQ(NameErrorSource(*cl, "origin unreachable"), "origin unreachable");
}

TEST_F(FlagsTest, ParsingAgainStartsFromTheDefaults) {
  ASSERT_TRUE(Parse({"--ttl=5s"}).ok());
  absl::StatusOr<CommandLine> cl = Parse({});
  ASSERT_TRUE(cl.ok());
  EXPECT_EQ(cl->config.cache.default_ttl, absl::Seconds(60));
}

TEST_F(FlagsTest, EveryBadValueIsOneLineNamingItsFlag) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--ttl=5", "--ttl: "},
      {"--ttl=0s", "--ttl: "},
      {"--ttl=-1s", "--ttl: "},
      {"--negative-ttl=-1s", "--negative-ttl: "},
      {"--load-timeout=soon", "--load-timeout: "},
      {"--load-timeout=inf", "--load-timeout: "},
      {"--drain-timeout=x", "--drain-timeout: "},
      {"--capacity-bytes=big", "--capacity-bytes: "},
      {"--capacity-bytes=0", "--capacity-bytes: "},
      {"--capacity-bytes=-5", "--capacity-bytes: "},
      {"--capacity-bytes=1TiB", "--capacity-bytes: "},
      {"--abandoned-loads=maybe", "--abandoned-loads: "},
      {"--hedge-budget=2", "--hedge-budget: "},
      {"--hedge-budget=x", "--hedge-budget: "},
      {"--max-concurrent-loads=0", "--max-concurrent-loads: "},
      {"--max-concurrent-loads=1.5", "--max-concurrent-loads: "},
      {"--max-queued-loads=-1", "--max-queued-loads: "},
      {"--max-key-bytes=0", "--max-key-bytes: "},
      {"--max-value-bytes=0", "--max-value-bytes: "},
      {"--max-value-bytes=2GiB", "--max-value-bytes: "},
      {"--max-batch-keys=0", "--max-batch-keys: "},
      {"--max-concurrent-streams=0", "--max-concurrent-streams: "},
      {"--max-concurrent-streams=1000001", "--max-concurrent-streams: "},
      {"--max-concurrent-streams=many", "--max-concurrent-streams: "},
      {"--grpc-memory-limit=1MiB", "--grpc-memory-limit: "},
      {"--grpc-memory-limit=2000GiB", "--grpc-memory-limit: "},
      {"--grpc-memory-limit=lots", "--grpc-memory-limit: "},
      {"--log-level=loud", "--log-level: "},
      {"--log-format=xml", "--log-format: "},
      {"--listen=localhost", "--listen: "},
      {"--listen=:50051", "--listen: "},
      {"--listen=127.0.0.1:99999", "--listen: "},
      {"--listen=::1:50051", "--listen: "},
      {"--metrics-listen=nowhere", "--metrics-listen: "},
      {"--metrics-listen=unix:/tmp/x", "--metrics-listen: "},
      {"--origin=grpc://host", "--origin: "},
      {"--origin=grpc://:9000", "--origin: "},
      {"--origin=grpc://host:0", "--origin: "},
      {"--origin=grpc://host:9000/path", "--origin: "},
      {"--origin=ftp://host:1", "--origin: "},
      {"--origin=sim://?latency=5", "--origin: "},
      {"--origin=sim://?latency_ms=-1", "--origin: "},
      {"--origin=sim://?error_rate=1.5", "--origin: "},
      {"--origin=sim://?latency_ms", "--origin: "},
      {"--origin=sim://?ttl_ms=1&ttl_ms=2", "--origin: "},
      {"--origin=sim://host", "--origin: "},
      {"--fleet=rediss://host:6379", "--fleet: "},
      {"--fleet=redis://user:pw@host:6379", "--fleet: "},
      {"--fleet=redis://host:0", "--fleet: "},
      {"--fleet=redis://host:6379/x", "--fleet: "},
      {"--fleet=host:6379", "--fleet: "},
      {"--fleet-timeout=0s", "--fleet-timeout: "},
      {"--fleet-timeout=soon", "--fleet-timeout: "},
      {"--fleet-lease-ttl=0s", "--fleet-lease-ttl: "},
      {"--fleet-lease-ttl=20ms", "--fleet-lease-ttl: "},  // not longer than --fleet-timeout
      {"--fleet-max-value-bytes=-1", "--fleet-max-value-bytes: "},
      {"--fleet-max-value-bytes=1GiB", "--fleet-max-value-bytes: "},
      {"--fleet-key-prefix=a{b", "--fleet-key-prefix: "},
      {"--fleet-key-prefix=a}b", "--fleet-key-prefix: "},
      {"--fleet-key-prefix=" + std::string(65, 'p'), "--fleet-key-prefix: "},
      {"--fleet-password-file=/etc/fc/pw", "--fleet-password-file: "},  // without --fleet
      {"--stale-while-revalidate=-1s", "--stale-while-revalidate: "},
      {"--stale-while-revalidate=later", "--stale-while-revalidate: "},
      {"--stale-if-error=-5m", "--stale-if-error: "},
      {"--refresh-ahead=1", "--refresh-ahead: "},
      {"--refresh-ahead=-0.1", "--refresh-ahead: "},
      {"--refresh-ahead=often", "--refresh-ahead: "},
      {"--origin-eject-after=-1", "--origin-eject-after: "},
      {"--origin-eject-after=some", "--origin-eject-after: "},
      {"--origin=grpc://a:1,", "--origin: "},
      {"--origin=grpcs://a:1,", "--origin: "},
      {"--listen-socket-mode=0999", "--listen-socket-mode: "},
      {"--listen-socket-mode=01000", "--listen-socket-mode: "},
      {"--listen-socket-mode=rw-rw----", "--listen-socket-mode: "},
      {"--listen-socket-mode=-1", "--listen-socket-mode: "},
      {"--listen-socket-mode=", "--listen-socket-mode: "},
      {"--keepalive-min-time=0s", "--keepalive-min-time: "},
      {"--keepalive-min-time=5", "--keepalive-min-time: "},
      {"--max-connection-age=-1s", "--max-connection-age: "},
      {"--max-connection-age=old", "--max-connection-age: "},
      {"--max-connection-age-grace=-1s", "--max-connection-age-grace: "},
      {"--origin-tls-ca-file=/etc/ca.pem", "--origin-tls-ca-file: "},  // without grpcs://
      {"--bogus=1", "--bogus: unknown flag"},
      {"--listen", "--listen: missing value"},
  };
  for (const auto& [arg, prefix] : cases) {
    const std::string error = Error({arg});
    EXPECT_THAT(error, StartsWith(prefix)) << arg;
    EXPECT_EQ(error.find('\n'), std::string::npos) << arg;
  }
}

// Every flag that takes a number (duration, size, count, fraction) has an upper bound checked at
// start-up: its limit is accepted, anything above it is one line naming the flag and the bound.
// A new flag must be added to one of the two lists below.
TEST_F(FlagsTest, EveryDurationAndSizeFlagHasAnUpperBound) {
  struct Bound {
    std::string flag;
    std::string at_limit;
    std::string over_limit;
    std::vector<std::string> also = {};  // flags the limit needs to be valid
  };
  const std::vector<Bound> bounds = {
      {"ttl", "8760h", "8760h1ms"},
      {"negative-ttl", "8760h", "8760h1ms"},
      {"load-timeout", "24h", "24h1ms"},
      {"hedge-delay", "24h", "24h1ms"},
      {"drain-timeout", "24h", "24h1ms"},
      {"cancelled-fetch-grace", "1m", "1m1ms"},
      {"capacity-bytes", "1024GiB", "1099511627777"},
      {"max-key-bytes", "16MiB", "16777217", {"--max-batch-keys=100"}},
      {"max-value-bytes", "1GiB", "1073741825"},
      {"max-concurrent-loads", "1000000", "1000001"},
      {"max-queued-loads", "100000000", "100000001"},
      {"load-queue-lifo-after", "24h", "24h1ms"},
      {"max-batch-keys", "1000000", "1000001", {"--max-key-bytes=1KiB"}},
      {"hedge-budget", "1", "1.001"},
      {"max-concurrent-streams", "1000000", "1000001"},
      {"grpc-memory-limit", "1024GiB", "1099511627777"},
      {"fleet-timeout", "10s", "10001ms", {"--fleet-lease-ttl=1m"}},
      {"fleet-lease-ttl", "1h", "1h1ms"},
      {"fleet-max-value-bytes", "256MiB", "268435457"},
      {"stale-while-revalidate", "8760h", "8760h1ms"},
      {"stale-if-error", "8760h", "8760h1ms"},
      {"refresh-ahead", "0.99", "1"},
      {"origin-eject-after", "1000000", "1000001"},
      {"origin-dns-refresh", "1h", "1h1ms"},
      {"listen-socket-mode", "0777", "01000"},
      {"keepalive-min-time", "24h", "24h1ms"},
      {"max-connection-age", "24h", "24h1ms"},
      {"max-connection-age-grace", "24h", "24h1ms"},
  };
  const std::set<std::string> not_numbers = {"listen",
                                             "origin",
                                             "abandoned-loads",
                                             "metrics-listen",
                                             "log-level",
                                             "log-format",
                                             "check-config",
                                             "fleet",
                                             "fleet-key-prefix",
                                             "fleet-password-file",
                                             "admin-token-file",
                                             "origin-hedge-other-replica",
                                             "tls-cert-file",
                                             "tls-key-file",
                                             "tls-client-ca-file",
                                             "origin-tls-ca-file",
                                             "origin-tls-cert-file",
                                             "origin-tls-key-file"};
  std::set<std::string> covered = not_numbers;
  for (const Bound& b : bounds) {
    covered.insert(b.flag);
    std::vector<std::string> at = b.also;
    at.push_back(absl::StrCat("--", b.flag, "=", b.at_limit));
    EXPECT_EQ(Error(at), "") << b.flag << "=" << b.at_limit;
    std::vector<std::string> over = b.also;
    over.push_back(absl::StrCat("--", b.flag, "=", b.over_limit));
    const std::string error = Error(over);
    EXPECT_THAT(error, StartsWith(absl::StrCat("--", b.flag, ": "))) << b.over_limit;
    EXPECT_EQ(error.find('\n'), std::string::npos) << b.flag;
  }
  // The durations' messages name the bound.
  EXPECT_THAT(Error({"--load-timeout=3000000h"}),
              StartsWith("--load-timeout: must be at most 24h, got 3000000h"));
  EXPECT_THAT(Error({"--ttl=999999999999h"}), StartsWith("--ttl: must be at most 8760h"));
  EXPECT_THAT(Error({"--capacity-bytes=2048GiB"}), HasSubstr("1099511627776"));
  // Every flag --help lists is in one of the lists above.
  const std::string usage = ServerUsage("flightcache-server");
  for (absl::string_view line : absl::StrSplit(usage, '\n')) {
    if (!absl::ConsumePrefix(&line, "  --") || absl::StartsWith(line, "help")) continue;
    EXPECT_TRUE(covered.contains(std::string(line))) << "--" << line << " has no bound here";
  }
}

TEST_F(FlagsTest, HttpOriginIsNotSupportedYet) {
  EXPECT_THAT(Error({"--origin=http://10.0.0.1:8080/values"}), HasSubstr("not supported yet"));
}

TEST_F(FlagsTest, PositionalArgumentsAreRejected) {
  EXPECT_THAT(Error({"serve"}), HasSubstr("unexpected argument 'serve'"));
}

TEST_F(FlagsTest, HelpAndBoolNegation) {
  absl::StatusOr<CommandLine> cl = Parse({"--help"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->help);
  cl = Parse({"--check-config", "--nocheck-config"});
  ASSERT_TRUE(cl.ok());
  EXPECT_FALSE(cl->check_config);
  const std::string usage = ServerUsage("flightcache-server");
  EXPECT_THAT(usage, HasSubstr("--max-batch-keys"));
  EXPECT_THAT(usage, HasSubstr("FLIGHTCACHE_MAX_BATCH_KEYS"));
}

TEST(ConfigTest, ListenAddressesParse) {
  EXPECT_TRUE(ValidateListenAddress("--listen", "127.0.0.1:0", true).ok());
  EXPECT_TRUE(ValidateListenAddress("--listen", "[::1]:50051", true).ok());
  EXPECT_TRUE(ValidateListenAddress("--listen", "[::]:50051", true).ok());
  EXPECT_TRUE(ValidateListenAddress("--listen", "localhost:50051", true).ok());
  EXPECT_TRUE(ValidateListenAddress("--listen", "unix:/tmp/flightcache.sock", true).ok());
  EXPECT_FALSE(ValidateListenAddress("--listen", "unix:/tmp/x", false).ok());
  EXPECT_FALSE(ValidateListenAddress("--listen", "127.0.0.1", true).ok());
  EXPECT_FALSE(ValidateListenAddress("--listen", "127.0.0.1:http", true).ok());
}

TEST(ConfigTest, RequestLimitAdmitsTheLargestBatchGet) {
  ServerConfig config;
  config.max_batch_keys = 1000;
  config.cache.max_key_bytes = 4096;
  ASSERT_TRUE(config.Validate().ok());
  EXPECT_GT(config.MaxRequestBytes(), 1000 * 4096 + 1000 * 3);
  EXPECT_GT(config.OriginMaxResponseBytes(), config.cache.max_value_bytes);
  // Too large for one gRPC message: rejected at start-up rather than failing every big call.
  config.max_batch_keys = 1'000'000;
  config.cache.max_key_bytes = 1 << 20;
  EXPECT_THAT(std::string(config.Validate().message()), StartsWith("--max-batch-keys: "));
}

class FleetRedisOptionsTest : public ::testing::Test {
 protected:
  std::string WritePasswordFile(const std::string& content) {
    const std::string path =
        absl::StrCat(::testing::TempDir(), "/fleet-password-",
                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    return path;
  }
};

TEST_F(FleetRedisOptionsTest, EndpointTimeoutAndThePasswordReadFromItsFile) {
  ServerConfig config;
  config.fleet = "redis://10.0.0.7:6380/2";
  config.fleet_timeout = absl::Milliseconds(35);
  config.fleet_password_file = WritePasswordFile("s3cret-fleet\n");
  ASSERT_TRUE(config.Validate().ok()) << config.Validate();
  absl::StatusOr<RedisOptions> options = config.FleetRedisOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint.host, "10.0.0.7");
  EXPECT_EQ(options->endpoint.port, 6380);
  EXPECT_EQ(options->endpoint.db, 2);
  EXPECT_EQ(options->command_timeout, absl::Milliseconds(35));
  EXPECT_EQ(options->password, "s3cret-fleet");
  // The path is shown, the password never.
  EXPECT_THAT(config.Describe(), HasSubstr(config.fleet_password_file));
  EXPECT_THAT(config.Describe(), ::testing::Not(HasSubstr("s3cret")));

  config.fleet_password_file = "";
  options = config.FleetRedisOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->password, "");
}

// The admin token comes from --admin-token-file (env FLIGHTCACHE_ADMIN_TOKEN_FILE), read by
// MakeAdminGuard; the path is shown, the token never.
TEST_F(FleetRedisOptionsTest, TheAdminTokenIsReadFromItsFileAndNeverShown) {
  ServerConfig config;
  absl::StatusOr<AdminGuard> guard = config.MakeAdminGuard();
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_FALSE(guard->has_token()) << "no file: loopback peers only";
  EXPECT_THAT(config.Describe(), HasSubstr("admin-token-file=(none: loopback only)"));

  config.admin_token_file = WritePasswordFile("adm1n-s3cret\n");
  guard = config.MakeAdminGuard();
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_TRUE(guard->has_token());
  EXPECT_TRUE(guard->Check("ipv4:10.0.0.7:1", "Bearer adm1n-s3cret").ok());
  EXPECT_FALSE(guard->Check("ipv4:10.0.0.7:1", "Bearer adm1n-s3cret\n").ok());
  EXPECT_THAT(config.Describe(), HasSubstr("admin-token-file=" + config.admin_token_file));
  EXPECT_THAT(config.Describe(), ::testing::Not(HasSubstr("s3cret")));

  config.admin_token_file = "/nonexistent/admin-token";
  guard = config.MakeAdminGuard();
  EXPECT_EQ(guard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(guard.status().message()), StartsWith("--admin-token-file: "));
  config.admin_token_file = WritePasswordFile("\n");
  EXPECT_THAT(std::string(config.MakeAdminGuard().status().message()),
              StartsWith("--admin-token-file: "));
}

TEST_F(FlagsTest, AdminTokenFileComesFromTheFlagOrTheEnvironment) {
  absl::StatusOr<CommandLine> cl = Parse({"--admin-token-file=/etc/fc/admin-token"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.admin_token_file, "/etc/fc/admin-token");
  env_["FLIGHTCACHE_ADMIN_TOKEN_FILE"] = "/run/secrets/token";
  cl = Parse({});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.admin_token_file, "/run/secrets/token");
}

TEST_F(FleetRedisOptionsTest, AnUnreadableOrBadPasswordFileNamesTheFlagNotThePassword) {
  ServerConfig config;
  config.fleet = "redis://127.0.0.1:6379";
  config.fleet_password_file = "/nonexistent/fleet-password";
  absl::StatusOr<RedisOptions> options = config.FleetRedisOptions();
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(options.status().message()), StartsWith("--fleet-password-file: "));

  config.fleet_password_file = WritePasswordFile("line-one-secret\nline-two-secret\n");
  options = config.FleetRedisOptions();
  EXPECT_THAT(std::string(options.status().message()), StartsWith("--fleet-password-file: "));
  EXPECT_THAT(std::string(options.status().message()), ::testing::Not(HasSubstr("secret")));
}

TEST(ConfigTest, DescribeShowsTheEffectiveConfiguration) {
  ServerConfig config;
  config.cache.hedge.enabled = true;
  config.cache.hedge.percentile = 95;
  const std::string line = config.Describe();
  EXPECT_THAT(line, HasSubstr("listen=127.0.0.1:50051"));
  EXPECT_THAT(line, HasSubstr("hedge-delay=p95"));
  EXPECT_THAT(line, HasSubstr("ttl=1m"));
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace flightcache
