// The built flightcache-server (FLIGHTCACHE_SERVER_BIN) at the edges of what the process may use,
// watched from outside:
// - file descriptors: it raises its soft RLIMIT_NOFILE to the hard limit (read back from
//   /proc/PID/limits); when it runs out all the same, gRPC 1.51's listener stops accepting for
//   good, so the server turns health NOT_SERVING, drains and exits 1 for a restart; a connection
//   that never completes the HTTP/2 handshake is closed after 10 s.
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/server_process.h"
#include "tests/integration/server_test_util.h"

namespace flightcache {
namespace {

using e2e::ReadFile;
using e2e::ServerProcess;
using ::testing::HasSubstr;

// Closes its descriptors when the test ends, however it ends.
class Sockets {
 public:
  ~Sockets() {
    for (int fd : fds_) close(fd);
  }
  void Add(int fd) { fds_.push_back(fd); }
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

// The "Max open files" soft and hard limits of process `pid` from /proc/PID/limits ({-1, -1}
// if not found; "unlimited" reads as -1).
std::pair<int64_t, int64_t> OpenFileLimits(pid_t pid) {
  const std::string limits = ReadFile(absl::StrCat("/proc/", pid, "/limits"));
  for (absl::string_view line : absl::StrSplit(limits, '\n')) {
    if (!absl::StartsWith(line, "Max open files")) continue;
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // Max open files SOFT HARD files
    if (words.size() < 5) break;
    int64_t soft = -1, hard = -1;
    if (!absl::SimpleAtoi(words[3], &soft)) soft = -1;
    if (!absl::SimpleAtoi(words[4], &hard)) hard = -1;
    return {soft, hard};
  }
  return {-1, -1};
}

std::shared_ptr<grpc::Channel> ChannelTo(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

TEST(ServerLimitsE2eTest, RaisesItsSoftOpenFileLimitToTheHardLimit) {
  ServerProcess server({"--listen=127.0.0.1:0", "--metrics-listen="},
                       ServerProcess::OpenFileLimit{.soft = 256, .hard = 4096});
  ASSERT_GT(server.WaitForPort(), 0) << server.err();
  const auto [soft, hard] = OpenFileLimits(server.pid());
  EXPECT_EQ(hard, 4096);
  EXPECT_EQ(soft, 4096) << "the soft limit was left where it was";
  EXPECT_THAT(server.err(), HasSubstr("open file limit raised from 256 to 4096 (the hard limit)"));
  EXPECT_EQ(server.Terminate(), 0) << server.err();
}

// Hard limit 128: a flood of idle connections exhausts the descriptors, accept4() fails with
// EMFILE and gRPC 1.51's listener never accepts again. The server must notice: health turns
// NOT_SERVING on the connections it still has, the call in flight is drained, and it exits 1.
TEST(ServerLimitsE2eTest, ListenerOutOfDescriptorsFailsHealthAndExitsOne) {
  constexpr int kDescriptors = 128;
  constexpr int kIdleConnections = 2 * kDescriptors;
  ServerProcess server({"--listen=127.0.0.1:0", "--metrics-listen=", "--drain-timeout=20s",
                        "--origin=sim://?latency_ms=3000&jitter_ms=0&value_bytes=8"},
                       ServerProcess::OpenFileLimit{.soft = kDescriptors, .hard = kDescriptors});
  const int port = server.WaitForPort();
  ASSERT_GT(port, 0) << server.err();
  // One connection made before the flood: it stays usable while the listener is dead.
  std::shared_ptr<grpc::Channel> channel = ChannelTo(port);
  absl::StatusOr<int> health = testing::CheckHealth(channel);
  ASSERT_TRUE(health.ok()) << health.status();
  ASSERT_EQ(*health, 1) << "SERVING before the flood";
  // A Get in flight (its origin takes 3 s) when the listener fails: the drain lets it finish.
  auto stub = v1::Cache::NewStub(channel);
  grpc::ClientContext context;
  testing::SetTimeout(context, absl::Seconds(30));
  v1::GetRequest request;
  request.set_key("in-flight");
  v1::GetResponse response;
  grpc::Status get_status;
  absl::Notification get_done;
  stub->async()->Get(&context, &request, &response, [&](grpc::Status s) {
    get_status = std::move(s);
    get_done.Notify();
  });

  // The flood must find the Get on the server, or the drain has nothing to wait for.
  int64_t inflight = 0;
  for (int i = 0; i < 200 && inflight == 0; ++i) {
    grpc::ClientContext stats_context;
    testing::SetTimeout(stats_context, absl::Seconds(10));
    v1::StatsResponse stats;
    if (stub->Stats(&stats_context, v1::StatsRequest(), &stats).ok()) {
      inflight = stats.loads_inflight();
    }
    if (inflight == 0) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(inflight, 1) << "the Get did not reach the server";

  Sockets idle;
  for (int i = 0; i < kIdleConnections; ++i) {
    const int fd = testing::ConnectLoopback(port);
    if (fd >= 0) idle.Add(fd);
  }
  ASSERT_GT(idle.size(), static_cast<size_t>(kDescriptors)) << "the kernel refused connections";
  const absl::Time flooded = absl::Now();

  // The listener failure is noticed and reported...
  const absl::Time deadline = flooded + absl::Seconds(20);
  while (!absl::StrContains(server.err(), "the gRPC listener failed") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_THAT(server.err(), HasSubstr("the gRPC listener failed")) << "no reaction to EMFILE";
  EXPECT_THAT(server.err(), HasSubstr("Failed accept4"));
  // ... health says so on the connection the server still has, while the Get is drained...
  health = testing::CheckHealth(channel);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 2) << "NOT_SERVING after the listener failed";
  ASSERT_TRUE(get_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(get_status.ok()) << get_status.error_message();
  // ... and the process exits 1 so that the orchestrator restarts it.
  const std::optional<int> code = server.WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(code.has_value()) << "still running " << absl::Now() - flooded << " after the flood";
  EXPECT_EQ(*code, 1) << server.err();
  std::printf("exit %d, %s after %zu idle connections against a limit of %d descriptors\n", *code,
              absl::FormatDuration(absl::Now() - flooded).c_str(), idle.size(), kDescriptors);
}

// A connection that never sends the HTTP/2 preface is closed by the server's 10 s handshake
// timeout (gRPC's default would keep it for 120 s).
TEST(ServerLimitsE2eTest, IdleConnectionIsClosedAfterTheHandshakeTimeout) {
  ServerProcess server({"--listen=127.0.0.1:0", "--metrics-listen="});
  const int port = server.WaitForPort();
  ASSERT_GT(port, 0) << server.err();
  Sockets sockets;
  const int fd = testing::ConnectLoopback(port);
  ASSERT_GE(fd, 0);
  sockets.Add(fd);
  const absl::Time connected = absl::Now();
  // The server speaks first (its SETTINGS frame): read until it closes the connection.
  ssize_t n = 1;
  while (n > 0 && absl::Now() - connected < absl::Seconds(30)) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1000) != 1) continue;
    char buffer[256];
    n = read(fd, buffer, sizeof(buffer));
  }
  ASSERT_LE(n, 0) << "the server kept an idle connection open for 30 s";
  const absl::Duration open_for = absl::Now() - connected;
  EXPECT_GE(open_for, absl::Seconds(8));
  EXPECT_LE(open_for, absl::Seconds(20));
  EXPECT_EQ(server.Terminate(), 0) << server.err();
}

}  // namespace
}  // namespace flightcache
