// The client programs against the real flightcache-server and the demo flightcache-origin:
// origin <- server <- loadgen / cli, all built binaries on free ports.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "flightcache/sim/origin_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/client_e2e_util.h"
#include "tests/e2e/server_process.h"
#include "tests/testing/test_certs.h"

namespace flightcache::e2e {
namespace {

using ::testing::HasSubstr;

class ClientServerE2eTest : public ::testing::Test {
 protected:
  // Starts the origin with `origin_flags`, then the server (with `server_flags`) in front of it;
  // over grpcs:// when `server_flags` has --origin-tls-* flags.
  void StartStack(std::vector<std::string> origin_flags,
                  const std::vector<std::string>& server_flags = {}) {
    std::vector<std::string> argv = {FLIGHTCACHE_ORIGIN_BIN, "--listen=127.0.0.1:0",
                                     "--port-file=" + dir_ + "/origin.port",
                                     "--stats-file=" + origin_stats(), "--stats-interval=20ms"};
    argv.insert(argv.end(), origin_flags.begin(), origin_flags.end());
    origin_ = std::make_unique<ChildProcess>(argv, ChildOptions{.dir = dir_});
    const std::optional<std::string> origin_port = WaitForFile(dir_ + "/origin.port");
    ASSERT_TRUE(origin_port.has_value()) << origin_->err();

    const bool origin_tls = std::any_of(
        server_flags.begin(), server_flags.end(),
        [](const std::string& flag) { return absl::StartsWith(flag, "--origin-tls-"); });
    std::vector<std::string> server_argv = {"--listen=127.0.0.1:0", "--metrics-listen=",
                                            absl::StrCat("--origin=", origin_tls ? "grpcs" : "grpc",
                                                         "://127.0.0.1:", std::stoi(*origin_port))};
    server_argv.insert(server_argv.end(), server_flags.begin(), server_flags.end());
    server_ = std::make_unique<ChildProcess>(ServerCommand(server_argv), ChildOptions{.dir = dir_});
    const int port = WaitForServerPort(*server_);
    ASSERT_GT(port, 0) << "server did not report its port: " << server_->err();
    target_ = absl::StrCat("127.0.0.1:", port);
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Signal(SIGTERM);
      EXPECT_EQ(server_->WaitForExit(absl::Seconds(30)), 0) << server_->err();
    }
    if (origin_ != nullptr) {
      origin_->Signal(SIGTERM);
      EXPECT_EQ(origin_->WaitForExit(absl::Seconds(30)), 0) << origin_->err();
    }
  }

  ProgramResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {FLIGHTCACHE_CLI_BIN, "--target=" + target_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, {.dir = dir_});
  }
  ProgramResult Loadgen(std::vector<std::string> args) {
    std::vector<std::string> argv = {FLIGHTCACHE_LOADGEN_BIN, "--target=" + target_,
                                     "--json=" + dir_ + "/report.json", "--progress=off"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, {.dir = dir_}, absl::Seconds(120));
  }
  std::string Report() const { return ReadFile(dir_ + "/report.json"); }
  std::string origin_stats() const { return dir_ + "/origin.json"; }
  int64_t OriginStat(absl::string_view key) const { return JsonInt(ReadFile(origin_stats()), key); }
  bool WaitForOriginStat(absl::string_view key, int64_t value) const {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (OriginStat(key) == value) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  const std::string dir_ = MakeTempDir();
  std::unique_ptr<ChildProcess> origin_;
  std::unique_ptr<ChildProcess> server_;
  std::string target_;
};

TEST_F(ClientServerE2eTest, HerdCoalescesIntoOneOriginFetchPerWave) {
  // One fetch per wave. A caller of a wave that a busy machine sends after its load has already
  // answered is a hit instead of a coalesced miss: both are "not an origin fetch", and the 300 ms
  // origin keeps most of each wave joining the load in flight.
  ASSERT_NO_FATAL_FAILURE(StartStack({"--latency=fixed:300ms"}));
  const ProgramResult r = Loadgen({"--scenario=herd", "--herd-size=200", "--waves=4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Report(), HasSubstr("\"status_codes\":{\"OK\":800}"));
  ASSERT_TRUE(WaitForOriginStat("fetches", 4)) << ReadFile(origin_stats());
  const std::string report = Report();
  const size_t server = report.find("\"server\":");
  ASSERT_NE(server, std::string::npos) << report;
  const std::string server_stats = report.substr(server);
  EXPECT_EQ(JsonInt(server_stats, "origin_fetches"), 4);
  EXPECT_EQ(JsonInt(server_stats, "coalesced") + JsonInt(server_stats, "hits"), 796);
  EXPECT_GE(JsonInt(server_stats, "coalesced"), 400) << "most of each wave joins the load";
  EXPECT_THAT(r.out, HasSubstr("LOADED=4 "));
}

// flightcache-origin serving mTLS (--tls-cert-file, --tls-key-file, --tls-client-ca-file) and the
// server dialling it with --origin=grpcs:// and its own client certificate.
TEST_F(ClientServerE2eTest, TheServerLoadsFromTheDemoOriginOverMutualTls) {
  testing::TestPki pki("e2e-origin-ca");
  ASSERT_TRUE(pki.ok());
  const testing::TestPki::Leaf origin = pki.Issue("origin");
  const testing::TestPki::Leaf sidecar = pki.Issue("sidecar");
  ASSERT_NO_FATAL_FAILURE(StartStack(
      {"--latency=fixed:1ms", "--tls-cert-file=" + origin.cert_file,
       "--tls-key-file=" + origin.key_file, "--tls-client-ca-file=" + pki.ca_file()},
      {"--origin-tls-ca-file=" + pki.ca_file(), "--origin-tls-cert-file=" + sidecar.cert_file,
       "--origin-tls-key-file=" + sidecar.key_file}));
  EXPECT_THAT(origin_->err(), HasSubstr(", mTLS)"));
  const ProgramResult r = Cli({"get", "over-mtls", "--raw"});
  ASSERT_EQ(r.exit_code, 0) << r.err << server_->err();
  const std::optional<sim::SimValueInfo> info = sim::DecodeSimValue(r.out);
  ASSERT_TRUE(info.has_value()) << r.out;
  EXPECT_EQ(info->key, "over-mtls");
  EXPECT_TRUE(WaitForOriginStat("fetches", 1)) << ReadFile(origin_stats());
}

TEST_F(ClientServerE2eTest, CliReadsValuesThatTheOriginVersions) {
  ASSERT_NO_FATAL_FAILURE(StartStack({"--latency=fixed:1ms"}));
  EXPECT_EQ(Cli({"health"}).exit_code, 0);
  auto version_of = [&](const std::string& key) -> uint64_t {
    const ProgramResult r = Cli({"get", key, "--raw"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::optional<sim::SimValueInfo> info = sim::DecodeSimValue(r.out);
    EXPECT_TRUE(info.has_value()) << r.out;
    EXPECT_EQ(info.has_value() ? info->key : "", key);
    return info.has_value() ? info->version : 0;
  };
  EXPECT_EQ(version_of("user:7"), 1u);
  EXPECT_EQ(version_of("user:7"), 1u);  // a hit: same value
  const ProgramResult invalidated = Cli({"invalidate", "user:7"});
  EXPECT_EQ(invalidated.out, "removed 1\n");
  EXPECT_EQ(version_of("user:7"), 2u);  // loaded again: the origin's next version
  const ProgramResult stats = Cli({"stats", "--json"});
  EXPECT_EQ(JsonInt(stats.out, "requests"), 3);
  EXPECT_EQ(JsonInt(stats.out, "origin_fetches"), 2);
}

TEST_F(ClientServerE2eTest, AbandonedLoadIsCancelledAtTheOrigin) {
  ASSERT_NO_FATAL_FAILURE(StartStack({"--latency=fixed:30s"}));
  const ProgramResult r = Cli({"get", "slow-key", "--deadline=300ms"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("DEADLINE_EXCEEDED"));
  // The only waiter left, so the server cancels its origin fetch (--abandoned-loads=cancel).
  EXPECT_TRUE(WaitForOriginStat("cancelled", 1)) << ReadFile(origin_stats());
  EXPECT_EQ(OriginStat("values"), 0);
}

TEST_F(ClientServerE2eTest, SteadyLoadReportsTheServersSavings) {
  ASSERT_NO_FATAL_FAILURE(StartStack({"--latency=fixed:5ms"}));
  const ProgramResult r = Loadgen({"--duration=1s", "--concurrency=32", "--keys=200",
                                   "--distribution=zipf:1.1", "--max-error-rate=0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string report = Report();
  const size_t server = report.find("\"server\":");
  ASSERT_NE(server, std::string::npos) << report;
  // At most one fetch per key (TTL 60 s), so the origin saw far fewer requests than the cache.
  EXPECT_LE(JsonInt(report.substr(server), "origin_fetches"), 200);
  EXPECT_EQ(JsonInt(report.substr(server), "requests"), JsonInt(report, "requests"));
  const size_t hit_ratio = report.find("\"hit_ratio\":", server);
  ASSERT_NE(hit_ratio, std::string::npos);
  EXPECT_GT(std::stod(report.substr(hit_ratio + 12)), 0.5) << report;  // 200 keys, 1000s of calls
}

// A server with mTLS: the cli and the load generator reach it with their TLS flags, and without
// them (plaintext, or TLS without a client certificate) they are refused.
TEST_F(ClientServerE2eTest, CliAndLoadgenDialAnMtlsServerWithTheirTlsFlags) {
  ::flightcache::testing::TestPki pki("e2e-ca");
  ASSERT_TRUE(pki.ok());
  const ::flightcache::testing::TestPki::Leaf server = pki.Issue("server");
  const ::flightcache::testing::TestPki::Leaf client = pki.Issue("client");
  ASSERT_NO_FATAL_FAILURE(
      StartStack({"--latency=fixed:1ms"},
                 {"--tls-cert-file=" + server.cert_file, "--tls-key-file=" + server.key_file,
                  "--tls-client-ca-file=" + pki.ca_file()}));
  const std::vector<std::string> tls = {"--tls-ca-file=" + pki.ca_file(),
                                        "--tls-server-name=localhost"};
  const std::vector<std::string> mtls = {
      "--tls-ca-file=" + pki.ca_file(), "--tls-server-name=localhost",
      "--tls-cert-file=" + client.cert_file, "--tls-key-file=" + client.key_file};

  std::vector<std::string> args = mtls;
  args.insert(args.end(), {"get", "k1"});
  ProgramResult r = Cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"--deadline=3s", "get", "k1"});
  EXPECT_EQ(r.exit_code, 1) << "plaintext to a TLS server: " << r.err;
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  args = tls;
  args.insert(args.end(), {"--deadline=3s", "get", "k1"});
  r = Cli(args);
  EXPECT_EQ(r.exit_code, 1) << "no client certificate: " << r.err;
  args = {"--tls-cert-file=" + client.cert_file, "get", "k1"};
  r = Cli(args);
  EXPECT_EQ(r.exit_code, 2) << "a certificate without its key is a usage error";
  EXPECT_THAT(r.err, HasSubstr("--tls-key-file"));

  args = mtls;
  args.insert(args.end(), {"--duration=1s", "--concurrency=4", "--keys=20"});
  r = Loadgen(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(JsonInt(Report(), "errors"), 0) << Report();
  EXPECT_GT(JsonInt(Report(), "requests"), 0) << Report();
}

}  // namespace
}  // namespace flightcache::e2e
