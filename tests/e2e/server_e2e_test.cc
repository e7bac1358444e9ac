// The built flightcache-server binary (its path is compiled in as FLIGHTCACHE_SERVER_BIN): exit
// status 2 with one line naming the flag for bad flags and environment values, --check-config
// exits 0 without binding, and a real run serves, drains on SIGTERM/SIGINT and exits 0.
#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/support/file_util.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/server_process.h"
#include "tests/testing/test_certs.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using e2e::ChildProcess;
using e2e::ServerCommand;
using e2e::WaitForServerPort;
using Result = ::flightcache::testing::ProgramResult;

Result RunServer(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  return ::flightcache::testing::RunProgram(ServerCommand(args), {.env = env}, absl::Seconds(30));
}

// One Get of `key` within 10 s.
grpc::Status GetKey(v1::Cache::Stub& stub, const std::string& key, v1::GetResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetRequest request;
  request.set_key(key);
  return stub.Get(&context, request, response);
}

// A listening TCP socket on 127.0.0.1 (no SO_REUSEPORT): while it lives, nobody else can bind.
class HeldPort {
 public:
  HeldPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 1), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~HeldPort() { close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

int CountLines(const std::string& text) {
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    (void)line;
    ++lines;
  }
  return lines;
}

TEST(ServerE2eTest, BadFlagValueExitsTwoWithOneLineNamingTheFlag) {
  const Result r = RunServer({"--ttl=abc"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, StartsWith("flightcache-server: --ttl: "));
}

TEST(ServerE2eTest, UnknownFlagExitsTwo) {
  const Result r = RunServer({"--no-such-flag=1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--no-such-flag"));
}

TEST(ServerE2eTest, BadEnvironmentValueExitsTwoNamingFlagAndVariable) {
  const Result r = RunServer({}, {"FLIGHTCACHE_LOG_LEVEL=loud"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--log-level"));
  EXPECT_THAT(r.err, HasSubstr("FLIGHTCACHE_LOG_LEVEL"));
}

TEST(ServerE2eTest, BadConfigurationFailsBeforeAnythingIsBound) {
  // Were the server to bind first, the taken address would fail it with a different error.
  HeldPort taken;
  for (const std::string& bad :
       {std::string("--origin=http://10.0.0.1:80/v"), std::string("--hedge-delay=p100"),
        std::string("--origin=sim://?latency_ms=fast"), std::string("--max-batch-keys=0")}) {
    const Result r = RunServer({"--listen=" + taken.address(), bad});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_EQ(CountLines(r.err), 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(bad.substr(0, bad.find('=')))) << r.err;
  }
}

TEST(ServerE2eTest, CheckConfigExitsZeroWithoutBinding) {
  HeldPort grpc_port, metrics_port;
  const Result r = RunServer({"--check-config", "--listen=" + grpc_port.address(),
                              "--metrics-listen=" + metrics_port.address(), "--hedge-delay=p95"},
                             {"FLIGHTCACHE_TTL=90s"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("configuration OK"));
  EXPECT_THAT(r.out, HasSubstr("ttl=1m30s"));
  EXPECT_THAT(r.out, HasSubstr("hedge-delay=p95"));
}

// --check-config reads a grpcs:// origin's TLS files: a key that is not the certificate's, or a
// file that is not there, exits 2 naming the flag; the output shows the paths, never a key.
TEST(ServerE2eTest, CheckConfigReadsTheOriginTlsFilesAndShowsOnlyTheirPaths) {
  testing::TestPki pki("e2e-check-ca");
  ASSERT_TRUE(pki.ok());
  const testing::TestPki::Leaf a = pki.Issue("a");
  const testing::TestPki::Leaf b = pki.Issue("b");
  const std::vector<std::string> good = {
      "--check-config", "--origin=grpcs://127.0.0.1:9443", "--origin-tls-ca-file=" + pki.ca_file(),
      "--origin-tls-cert-file=" + a.cert_file, "--origin-tls-key-file=" + a.key_file};
  const Result ok = RunServer(good);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("origin-tls-key-file=" + a.key_file));
  EXPECT_THAT(ok.out + ok.err, Not(HasSubstr("PRIVATE KEY")));

  std::vector<std::string> wrong_key = good;
  wrong_key.back() = "--origin-tls-key-file=" + b.key_file;
  const Result mismatch = RunServer(wrong_key);
  EXPECT_EQ(mismatch.exit_code, 2);
  EXPECT_EQ(CountLines(mismatch.err), 1) << mismatch.err;
  EXPECT_THAT(mismatch.err, StartsWith("flightcache-server: --origin-tls-key-file: "));
  EXPECT_THAT(mismatch.err, Not(HasSubstr("PRIVATE KEY")));

  const Result missing = RunServer({"--check-config", "--origin=grpcs://127.0.0.1:9443",
                                    "--origin-tls-ca-file=" + pki.dir() + "/none.pem"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, StartsWith("flightcache-server: --origin-tls-ca-file "));

  const Result plaintext = RunServer({"--check-config", "--origin=grpc://127.0.0.1:9000",
                                      "--origin-tls-ca-file=" + pki.ca_file()});
  EXPECT_EQ(plaintext.exit_code, 2);
  EXPECT_EQ(plaintext.err,
            "flightcache-server: --origin-tls-ca-file: set, but --origin is not grpcs://\n");
}

TEST(ServerE2eTest, TakenAddressExitsOne) {
  HeldPort taken;
  const Result r = RunServer({"--listen=" + taken.address(), "--metrics-listen="});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--listen"));
}

TEST(ServerE2eTest, HelpExitsZero) {
  const Result r = RunServer({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--max-value-bytes"));
}

TEST(ServerE2eTest, ServesThenDrainsOnSigtermAndExitsZero) {
  ChildProcess server(ServerCommand({"--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
                                     "--log-format=json", "--drain-timeout=5s", "--log-level=debug",
                                     "--origin=sim://?latency_ms=1&jitter_ms=0&value_bytes=32"}));
  const int port = WaitForServerPort(server);
  ASSERT_GT(port, 0) << server.err();
  auto stub = v1::Cache::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  v1::GetResponse response;
  const grpc::Status status = GetKey(*stub, "user:7", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_THAT(response.value(), HasSubstr("user:7"));

  // The client keeps its connection open, as an application beside the sidecar would.
  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitForExit(absl::Seconds(20)), 0) << server.err();
  // --log-format=json: every line is one JSON object; the last is the shutdown summary.
  const std::string err = server.err();
  std::vector<std::string> lines = absl::StrSplit(err, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 3u) << err;
  for (const std::string& line : lines) {
    EXPECT_THAT(line, StartsWith("{\"ts\":\"")) << line;
    EXPECT_EQ(line.back(), '}') << line;
  }
  EXPECT_THAT(lines.back(), HasSubstr("stopped"));
  EXPECT_THAT(lines.back(), HasSubstr("requests=1"));
}

// A key that is not UTF-8 (proto3 strings must be) is INVALID_ARGUMENT, and protobuf's parser's
// complaint about it goes through the server's logger (JSON here), at most once a second: not a
// raw stderr line per request, which any client could make the server write as fast as it likes.
TEST(ServerE2eTest, KeysThatAreNotUtf8AreRefusedWithoutALogLineEach) {
  ChildProcess server(
      ServerCommand({"--listen=127.0.0.1:0", "--metrics-listen=", "--log-format=json",
                     "--origin=sim://?latency_ms=1&jitter_ms=0&value_bytes=32"}));
  const int port = WaitForServerPort(server);
  ASSERT_GT(port, 0) << server.err();
  grpc::GenericStub stub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  const std::string not_utf8_key("\x0a\x01\xff", 3);  // GetRequest{key: "\xff"}, by hand
  constexpr int kCalls = 200;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kCalls; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Slice slice(not_utf8_key);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer reply;
    grpc::Status status;
    absl::Notification done;
    stub.UnaryCall(&context, "/flightcache.v1.Cache/Get", grpc::StubOptions(), &request, &reply,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20))) << i;
    ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  }
  const absl::Duration took = absl::Now() - start;
  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitForExit(absl::Seconds(20)), 0) << server.err();
  const std::string err = server.err();
  int complaints = 0;
  const std::vector<std::string> lines = absl::StrSplit(err, '\n', absl::SkipEmpty());
  for (const std::string& line : lines) {
    EXPECT_THAT(line, StartsWith("{\"ts\":\"")) << line;
    if (absl::StrContains(line, "invalid UTF-8")) ++complaints;
  }
  EXPECT_GE(complaints, 1) << err;
  EXPECT_LE(complaints, 2 + absl::ToInt64Seconds(took)) << complaints << " lines in " << took;
}

// Invalidate with --admin-token-file: refused without the token or with a wrong one, served with
// it; Get needs none; the refusals are counted and logged; the token appears in no output of the
// process (--check-config included), and an unreadable token file is a start-up error.
// The TLS files are read and checked before anything is bound (--check-config too): a key that
// is not the certificate's, or a missing file, exits 2 naming the flag; the key never shows.
TEST(ServerE2eTest, CheckConfigReadsTheTlsFiles) {
  ::flightcache::testing::TestPki pki("check-config-ca");
  ASSERT_TRUE(pki.ok());
  const ::flightcache::testing::TestPki::Leaf server = pki.Issue("server");
  const ::flightcache::testing::TestPki::Leaf other = pki.Issue("other");
  const std::string key_pem = ::flightcache::testing::ReadFile(server.key_file);
  const Result ok =
      RunServer({"--check-config", "--tls-cert-file=" + server.cert_file,
                 "--tls-key-file=" + server.key_file, "--tls-client-ca-file=" + pki.ca_file()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("tls-cert-file=" + server.cert_file));
  const Result apart = RunServer({"--check-config", "--tls-cert-file=" + server.cert_file,
                                  "--tls-key-file=" + other.key_file});
  EXPECT_EQ(apart.exit_code, 2);
  EXPECT_THAT(apart.err, StartsWith("flightcache-server: --tls-key-file: the key does not match"));
  const Result missing =
      RunServer({"--check-config", "--tls-cert-file=" + server.cert_file,
                 "--tls-key-file=" + server.key_file, "--tls-client-ca-file=/nonexistent/ca.pem"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, StartsWith("flightcache-server: --tls-client-ca-file"));
  const Result alone = RunServer({"--check-config", "--tls-key-file=" + server.key_file});
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_THAT(alone.err, StartsWith("flightcache-server: --tls-cert-file"));
  for (const Result* r : {&ok, &apart, &missing, &alone}) {
    EXPECT_THAT(r->out + r->err, Not(HasSubstr(key_pem.substr(40, 40))));
  }
}

TEST(ServerE2eTest, InvalidateNeedsTheAdminTokenWhichNoOutputShows) {
  constexpr char kToken[] = "tok-5e3f9a1c7b";
  const std::string dir = ::flightcache::testing::MakeTempDir();
  const std::string token_file = dir + "/admin-token";
  ASSERT_TRUE(support::WriteFileAtomically(token_file, absl::StrCat(kToken, "\n")).ok());

  const Result check = RunServer({"--check-config", "--admin-token-file=" + token_file});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_THAT(check.out, HasSubstr("admin-token-file=" + token_file));
  EXPECT_THAT(check.out + check.err, Not(HasSubstr(kToken)));
  const Result missing = RunServer({"--check-config", "--admin-token-file=" + dir + "/none"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, StartsWith("flightcache-server: --admin-token-file: "));

  ChildProcess server(ServerCommand({"--listen=127.0.0.1:0", "--metrics-listen=",
                                     "--log-level=debug", "--admin-token-file=" + token_file,
                                     "--origin=sim://?latency_ms=1&jitter_ms=0&value_bytes=32"}));
  const int port = WaitForServerPort(server);
  ASSERT_GT(port, 0) << server.err();
  auto stub = v1::Cache::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  const auto invalidate = [&](const char* authorization) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (authorization != nullptr) context.AddMetadata("authorization", authorization);
    v1::InvalidateRequest request;
    request.add_keys("user:1");
    v1::InvalidateResponse response;
    return stub->Invalidate(&context, request, &response);
  };
  // From loopback too: with a token file, the token is what counts.
  EXPECT_EQ(invalidate(nullptr).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(invalidate("Bearer not-it").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status ok = invalidate(absl::StrCat("Bearer ", kToken).c_str());
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  v1::GetResponse response;
  const grpc::Status get = GetKey(*stub, "user:1", &response);
  EXPECT_TRUE(get.ok()) << get.error_message();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::StatsResponse stats;
  ASSERT_TRUE(stub->Stats(&context, v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.permission_denied(), 2);

  // Rotated in place, as a Secret update does: the new token is in force, the old one refused.
  constexpr char kNextToken[] = "tok-rotated-88d1";
  ASSERT_TRUE(support::WriteFileAtomically(token_file, absl::StrCat(kNextToken, "\n")).ok());
  ASSERT_THAT(server.WaitForLine("the new token is in force", absl::Seconds(20)),
              HasSubstr(token_file))
      << server.err();
  EXPECT_EQ(invalidate(absl::StrCat("Bearer ", kToken).c_str()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status rotated = invalidate(absl::StrCat("Bearer ", kNextToken).c_str());
  EXPECT_TRUE(rotated.ok()) << rotated.error_message();

  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitForExit(absl::Seconds(20)), 0) << server.err();
  EXPECT_THAT(server.err(), HasSubstr("refused Invalidate from ipv"));
  EXPECT_THAT(server.err(), HasSubstr("admin-token-file=" + token_file));  // the start-up line
  EXPECT_THAT(server.err() + server.out(), Not(HasSubstr(kToken)));
  EXPECT_THAT(server.err() + server.out(), Not(HasSubstr(kNextToken)));
}

// A second signal during the drain ends the process at once (exit 1) instead of waiting for the
// calls in flight: here a Get whose load takes 30 s, under a 60 s drain timeout.
TEST(ServerE2eTest, SecondSignalDuringTheDrainExitsAtOnce) {
  ChildProcess server(ServerCommand(
      {"--listen=127.0.0.1:0", "--metrics-listen=", "--drain-timeout=60s", "--load-timeout=60s",
       "--origin=sim://?latency_ms=30000&jitter_ms=0&value_bytes=8"}));
  const int port = WaitForServerPort(server);
  ASSERT_GT(port, 0) << server.err();
  auto stub = v1::Cache::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  v1::GetRequest request;
  request.set_key("slow");
  v1::GetResponse response;
  absl::Notification answered;
  stub->async()->Get(&context, &request, &response,
                     [&answered](grpc::Status) { answered.Notify(); });
  // Wait until the Get's load runs on the server: the drain below then has a call to wait for.
  int64_t inflight = 0;
  for (int i = 0; i < 200 && inflight == 0; ++i) {
    grpc::ClientContext stats_context;
    v1::StatsResponse stats;
    if (stub->Stats(&stats_context, v1::StatsRequest(), &stats).ok())
      inflight = stats.loads_inflight();
    if (inflight == 0) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(inflight, 1);

  server.Signal(SIGTERM);
  ASSERT_FALSE(server.WaitForLine("shutting down gracefully", absl::Seconds(20)).empty())
      << server.err();
  EXPECT_FALSE(server.WaitForExit(absl::Seconds(2)).has_value())
      << "the drain should still be waiting for the Get";
  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitForExit(absl::Seconds(10)), 1) << server.err();
  EXPECT_THAT(server.err(), HasSubstr("received SIGTERM while shutting down"));
  EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

TEST(ServerE2eTest, SigintAlsoDrainsAndExitsZero) {
  ChildProcess server(ServerCommand({"--listen=127.0.0.1:0", "--metrics-listen="}));
  ASSERT_GT(WaitForServerPort(server), 0) << server.err();
  server.Signal(SIGINT);
  EXPECT_EQ(server.WaitForExit(absl::Seconds(20)), 0) << server.err();
  EXPECT_THAT(server.err(), HasSubstr("SIGINT"));
}

}  // namespace
}  // namespace flightcache
