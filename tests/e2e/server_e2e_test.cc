// The built flightcache-server binary (its path is compiled in as FLIGHTCACHE_SERVER_BIN): exit
// status 2 with one line naming the flag for bad flags and environment values, --check-config
// exits 0 without binding, and a real run serves, drains on SIGTERM/SIGINT and exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/server_process.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A child process running the server, with its stdout and stderr collected by a reader thread.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& args, const std::vector<std::string>& extra_env) {
    int out[2], err[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(err), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, err[0]);
    std::vector<std::string> argv_strings = {FLIGHTCACHE_SERVER_BIN};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = e2e::ServerEnvironment();
    env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    EXPECT_EQ(rc, 0) << std::strerror(rc);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    close(err[1]);
    reader_ = std::thread([this, out = out[0], err = err[0]] { Read(out, err); });
  }

  ~ServerProcess() {
    if (!exited_) {
      kill(pid_, SIGKILL);
      Wait(absl::Seconds(10));
    }
    if (reader_.joinable()) reader_.join();
  }

  // The exit status, or -1 if the process has not exited within `timeout` (or died by a signal).
  int Wait(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        if (reader_.joinable()) reader_.join();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return -1;
  }

  void Signal(int signal) { kill(pid_, signal); }

  // Waits until stderr holds a line containing `needle`; returns that line (empty on timeout).
  std::string WaitForStderrLine(const std::string& needle, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    std::string found;
    auto has_line = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (absl::string_view line : absl::StrSplit(err_, '\n')) {
        if (absl::StrContains(line, needle)) {
          found = std::string(line);
          return true;
        }
      }
      return eof_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&has_line), timeout);
    return found;
  }

  std::string out() {
    absl::MutexLock lock(&mu_);
    return out_;
  }
  std::string err() {
    absl::MutexLock lock(&mu_);
    return err_;
  }

 private:
  void Read(int out, int err) {
    pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
    int open_fds = 2;
    char buffer[4096];
    while (open_fds > 0) {
      if (poll(fds, 2, 1000) < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
        if (n <= 0) {
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
          continue;
        }
        absl::MutexLock lock(&mu_);
        (i == 0 ? out_ : err_).append(buffer, static_cast<size_t>(n));
      }
    }
    absl::MutexLock lock(&mu_);
    eof_ = true;
  }

  pid_t pid_ = 0;
  bool exited_ = false;
  std::thread reader_;
  absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string err_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

struct Result {
  int exit_code;
  std::string out;
  std::string err;
};

Result RunServer(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  ServerProcess process(args, env);
  const int code = process.Wait(absl::Seconds(30));
  return {code, process.out(), process.err()};
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

// Starts the server on free ports; returns the gRPC port from its start-up line (0 on failure).
int StartAndFindPort(ServerProcess& server) {
  const std::string line = server.WaitForStderrLine("listening on", absl::Seconds(30));
  const size_t at = line.find("(port ");
  int port = 0;
  if (at == std::string::npos) return 0;
  const std::string rest = line.substr(at + 6);
  if (!absl::SimpleAtoi(rest.substr(0, rest.find(')')), &port)) return 0;
  return port;
}

TEST(ServerE2eTest, ServesThenDrainsOnSigtermAndExitsZero) {
  ServerProcess server({"--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0", "--log-format=json",
                        "--drain-timeout=5s", "--log-level=debug",
                        "--origin=sim://?latency_ms=1&jitter_ms=0&value_bytes=32"},
                       {});
  const int port = StartAndFindPort(server);
  ASSERT_GT(port, 0) << server.err();
  auto stub = v1::Cache::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetRequest request;
  request.set_key("user:7");
  v1::GetResponse response;
  const grpc::Status status = stub->Get(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_THAT(response.value(), HasSubstr("user:7"));

  // The client keeps its connection open, as an application beside the sidecar would.
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(absl::Seconds(20)), 0) << server.err();
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
  ServerProcess server({"--listen=127.0.0.1:0", "--metrics-listen=", "--log-format=json",
                        "--origin=sim://?latency_ms=1&jitter_ms=0&value_bytes=32"},
                       {});
  const int port = StartAndFindPort(server);
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
  EXPECT_EQ(server.Wait(absl::Seconds(20)), 0) << server.err();
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

// A second signal during the drain ends the process at once (exit 1) instead of waiting for the
// calls in flight: here a Get whose load takes 30 s, under a 60 s drain timeout.
TEST(ServerE2eTest, SecondSignalDuringTheDrainExitsAtOnce) {
  ServerProcess server(
      {"--listen=127.0.0.1:0", "--metrics-listen=", "--drain-timeout=60s", "--load-timeout=60s",
       "--origin=sim://?latency_ms=30000&jitter_ms=0&value_bytes=8"},
      {});
  const int port = StartAndFindPort(server);
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
  ASSERT_FALSE(server.WaitForStderrLine("shutting down gracefully", absl::Seconds(20)).empty())
      << server.err();
  EXPECT_EQ(server.Wait(absl::Seconds(2)), -1) << "the drain should still be waiting for the Get";
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(absl::Seconds(10)), 1) << server.err();
  EXPECT_THAT(server.err(), HasSubstr("received SIGTERM while shutting down"));
  EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

TEST(ServerE2eTest, SigintAlsoDrainsAndExitsZero) {
  ServerProcess server({"--listen=127.0.0.1:0", "--metrics-listen="}, {});
  ASSERT_GT(StartAndFindPort(server), 0) << server.err();
  server.Signal(SIGINT);
  EXPECT_EQ(server.Wait(absl::Seconds(20)), 0) << server.err();
  EXPECT_THAT(server.err(), HasSubstr("SIGINT"));
}

}  // namespace
}  // namespace flightcache
