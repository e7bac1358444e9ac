// The listener's bounds against a client that abuses it, over loopback: the largest request
// (derived from --max-batch-keys and --max-key-bytes), keepalive enforcement
// (--keepalive-min-time), connection age (--max-connection-age, --max-connection-age-grace), and
// the unix socket's mode (--listen-socket-mode). The Sidecar in-process, a TestOrigin.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/server_test_util.h"
#include "tests/testing/child_process.h"

namespace flightcache::testing {
namespace {

using ::testing::HasSubstr;

class ListenerBoundsTest : public SidecarTest {
 protected:
  // A channel of its own to the sidecar (one connection), with `args`.
  std::unique_ptr<v1::Cache::Stub> Connect(const grpc::ChannelArguments& args) {
    channels_.push_back(grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", sidecar_->port()),
                                                  grpc::InsecureChannelCredentials(), args));
    return v1::Cache::NewStub(channels_.back());
  }

  static std::unique_ptr<PendingGet> StartGetOn(v1::Cache::Stub& stub, const std::string& key,
                                                absl::Duration timeout = absl::Seconds(60)) {
    auto call = std::make_unique<PendingGet>();
    SetTimeout(call->context, timeout);
    call->request.set_key(key);
    PendingGet* c = call.get();
    stub.async()->Get(&c->context, &c->request, &c->response, [c](grpc::Status status) {
      c->status = std::move(status);
      c->done.Notify();
    });
    return call;
  }

  // A client that pings every `interval` while it has calls open, however long the server
  // sends nothing (gRPC's own client would stop after two pings without data).
  static grpc::ChannelArguments Pinging(absl::Duration interval) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(absl::ToInt64Milliseconds(interval)));
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    return args;
  }

  // Waits (bounded) for `channel` to leave READY; false if it is still READY at `timeout`.
  static bool WaitForChannelToLeaveReady(grpc::Channel& channel, absl::Duration timeout) {
    const auto deadline = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
    while (channel.GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) {
      if (!channel.WaitForStateChange(GRPC_CHANNEL_READY, deadline)) return false;
    }
    return true;
  }

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

// A request above ServerConfig::MaxRequestBytes is refused by gRPC before it is read into the
// cache service: RESOURCE_EXHAUSTED, and the server goes on serving.
TEST_F(ListenerBoundsTest, ARequestAboveTheLimitIsResourceExhaustedAndTheServerStaysUp) {
  ServerConfig config = BaseConfig();
  config.max_batch_keys = 2;
  config.cache.max_key_bytes = 16;  // a limit of 2 x (16 + 8) + 64 KiB
  StartServer(config);
  ASSERT_LT(config.MaxRequestBytes(), 128 << 10);
  v1::GetResponse response;
  const grpc::Status refused = Get(std::string(128 << 10, 'k'), &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_EQ(origin_->fetches(), 0);
  const grpc::Status served = Get("k", &response);
  ASSERT_TRUE(served.ok()) << served.error_message();
  EXPECT_EQ(response.value(), TestOrigin::DefaultValue("k", 1));
}

// A client may ping at most once per --keepalive-min-time while the server sends it nothing. One
// that pings every second (gRPC 1.51's client sends no more than that, whatever its keepalive
// time) against --keepalive-min-time=3s is cut off (GOAWAY too_many_pings: its call fails
// UNAVAILABLE at once, long before the origin answers); the same client against
// --keepalive-min-time=300ms keeps its call. gRPC's default minimum, 5 minutes, would have cut
// that one off too.
TEST_F(ListenerBoundsTest, AClientPingingTooOftenIsCutOffAndOnePingingWithinTheRuleIsNot) {
  ServerConfig config = BaseConfig();
  config.cache.load_timeout = absl::Minutes(1);  // the held calls wait for the test, not for it
  config.keepalive_min_time = absl::Milliseconds(300);
  StartServer(config);
  config.keepalive_min_time = absl::Seconds(3);
  absl::StatusOr<std::unique_ptr<Sidecar>> strict = Sidecar::Start(config);
  ASSERT_TRUE(strict.ok()) << strict.status();
  origin_->SetDefaultBehavior({.hold = true});
  std::unique_ptr<v1::Cache::Stub> polite = Connect(Pinging(absl::Seconds(1)));
  auto abusive = v1::Cache::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", (*strict)->port()),
                                grpc::InsecureChannelCredentials(), Pinging(absl::Seconds(1))));
  const absl::Time start = absl::Now();
  std::unique_ptr<PendingGet> polite_get = StartGetOn(*polite, "polite");
  std::unique_ptr<PendingGet> abusive_get = StartGetOn(*abusive, "abusive");
  ASSERT_TRUE(origin_->WaitForHeld("polite", 1));

  ASSERT_TRUE(abusive_get->Wait(absl::Seconds(30))) << "the abusive client was never cut off";
  EXPECT_EQ(abusive_get->status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << abusive_get->status.error_message();
  // The polite client pings at least 5 times while its call waits, and keeps it.
  const absl::Duration polite_window = absl::Seconds(6) - (absl::Now() - start);
  EXPECT_FALSE(polite_get->Wait(std::max(polite_window, absl::Seconds(1))))
      << "the polite client lost its call: " << polite_get->status.error_message();
  EXPECT_EQ(origin_->Release("polite"), 1);
  ASSERT_TRUE(polite_get->Wait());
  EXPECT_TRUE(polite_get->status.ok()) << polite_get->status.error_message();
  (*strict)->Shutdown();
}

// --max-connection-age=3s: the connection gets GOAWAY after about 3 s (the channel leaves READY
// while its call still waits), and the call, within --max-connection-age-grace, finishes. (3 s:
// time for a busy machine to connect and start the call before the age passes.)
TEST_F(ListenerBoundsTest, AConnectionIsClosedAtItsAgeAndItsCallFinishesWithinTheGrace) {
  ServerConfig config = BaseConfig();
  config.max_connection_age = absl::Seconds(3);
  config.max_connection_age_grace = absl::Seconds(30);
  config.cache.load_timeout = absl::Minutes(1);
  StartServer(config);
  origin_->SetDefaultBehavior({.hold = true});
  std::unique_ptr<v1::Cache::Stub> stub = Connect(grpc::ChannelArguments());
  std::unique_ptr<PendingGet> get = StartGetOn(*stub, "held");
  ASSERT_TRUE(origin_->WaitForHeld("held", 1));
  ASSERT_EQ(channels_.back()->GetState(false), GRPC_CHANNEL_READY);

  EXPECT_TRUE(WaitForChannelToLeaveReady(*channels_.back(), absl::Seconds(20)))
      << "the connection outlived its age";
  EXPECT_FALSE(get->done.HasBeenNotified()) << get->status.error_message();
  EXPECT_EQ(origin_->Release("held"), 1);
  ASSERT_TRUE(get->Wait());
  EXPECT_TRUE(get->status.ok()) << get->status.error_message();
  // The client reconnects for its next call.
  origin_->ClearBehaviors();
  v1::GetResponse response;
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::GetRequest request;
  request.set_key("next");
  EXPECT_TRUE(stub->Get(&context, request, &response).ok());
}

// A call still running when the grace ends is cut: the connection is closed under it (about 2 s
// after it was made; the origin holds the call for good).
TEST_F(ListenerBoundsTest, ACallStillRunningWhenTheAgeGraceEndsIsCut) {
  ServerConfig config = BaseConfig();
  config.max_connection_age = absl::Seconds(1);
  config.max_connection_age_grace = absl::Seconds(1);
  config.cache.load_timeout = absl::Minutes(1);  // what cuts the call is not the load's timeout
  StartServer(config);
  origin_->SetDefaultBehavior({.hold = true});
  std::unique_ptr<v1::Cache::Stub> stub = Connect(grpc::ChannelArguments());
  std::unique_ptr<PendingGet> get = StartGetOn(*stub, "held");
  ASSERT_TRUE(origin_->WaitForHeld("held", 1));
  ASSERT_TRUE(get->Wait(absl::Seconds(20))) << "the call outlived its connection's age + grace";
  EXPECT_EQ(get->status.error_code(), grpc::StatusCode::UNAVAILABLE) << get->status.error_message();
}

class UnixSocketTest : public ListenerBoundsTest {
 protected:
  void StartOnUnixSocket(int mode) {
    ServerConfig config = BaseConfig();
    config.listen = "unix:" + path_;
    config.listen_socket_mode = mode;
    absl::StatusOr<std::unique_ptr<Sidecar>> sidecar = Sidecar::Start(config);
    ASSERT_TRUE(sidecar.ok()) << sidecar.status();
    sidecar_ = *std::move(sidecar);
    channel_ = grpc::CreateChannel("unix:" + path_, grpc::InsecureChannelCredentials());
    stub_ = v1::Cache::NewStub(channel_);
  }

  void StopServer() {
    stub_.reset();
    channel_.reset();
    sidecar_->Shutdown();
    sidecar_.reset();
  }

  // Entries of dir_ other than the socket: what a start left behind.
  std::vector<std::string> Leftovers() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      if (entry.path() != path_) names.push_back(entry.path().filename());
    }
    return names;
  }

  const std::string dir_ = MakeTempDir();
  const std::string path_ = dir_ + "/fc.sock";
};

TEST_F(UnixSocketTest, TheSocketHasItsModeAndServesGets) {
  for (const int mode : {0640, 0600}) {
    StartOnUnixSocket(mode);
    struct stat st {};
    ASSERT_EQ(lstat(path_.c_str(), &st), 0) << path_ << ": " << std::strerror(errno);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, static_cast<mode_t>(mode)) << std::oct << (st.st_mode & 07777);
    v1::GetResponse response;
    const grpc::Status status = Get("k", &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.value(), TestOrigin::DefaultValue("k", mode == 0640 ? 1 : 2));
    EXPECT_THAT(Leftovers(), ::testing::IsEmpty());
    StopServer();
    EXPECT_FALSE(std::filesystem::exists(path_)) << "the socket outlived its server";
  }
}

// A socket left by a server that died is replaced (as gRPC's own bind does); a file of any
// other kind at the path is not touched and the start fails naming it.
TEST_F(UnixSocketTest, AStaleSocketIsReplacedButNoOtherFile) {
  const int stale = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(stale, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(stale);
  StartOnUnixSocket(0660);
  v1::GetResponse response;
  EXPECT_TRUE(Get("k", &response).ok());
  StopServer();

  std::ofstream(path_) << "not a socket";
  ServerConfig config = BaseConfig();
  config.listen = "unix:" + path_;
  absl::StatusOr<std::unique_ptr<Sidecar>> sidecar = Sidecar::Start(config);
  EXPECT_EQ(sidecar.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(sidecar.status().message()),
              HasSubstr(absl::StrCat("--listen: cannot listen on unix:", path_, ": it exists")));
  EXPECT_EQ(ReadFile(path_), "not a socket");
  EXPECT_THAT(Leftovers(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace flightcache::testing
