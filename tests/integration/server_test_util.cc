#include "tests/integration/server_test_util.h"

#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/client_callback.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli/health_check.h"
#include "server/status_mapping.h"

namespace flightcache::testing {

absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service) {
  absl::StatusOr<cli::ServingStatus> status = cli::CheckHealth(channel, service, absl::Seconds(10));
  if (!status.ok()) return status.status();
  return static_cast<int>(*status);
}

namespace {

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

}  // namespace

grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                          const std::string& request, std::string* reply, absl::Duration timeout) {
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer reply_buffer;
  grpc::ClientContext context;
  SetTimeout(context, timeout);
  grpc::GenericStub stub(channel);
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &reply_buffer,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  // The call's deadline bounds this wait; the margin covers a completion that runs late.
  if (!done.WaitForNotificationWithTimeout(timeout + absl::Seconds(10))) {
    context.TryCancel();
    done.WaitForNotification();
  }
  if (reply != nullptr) *reply = Flatten(reply_buffer);
  return status;
}

namespace {

// One request, one response, then done.
class ReflectionCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit ReflectionCall(const std::shared_ptr<grpc::Channel>& channel) : stub_(channel) {
    // ServerReflectionRequest{list_services = 7: ""}: tag (7 << 3 | 2), length 0.
    grpc::Slice slice(std::string("\x3a\x00", 2));
    request_ = grpc::ByteBuffer(&slice, 1);
    SetTimeout(context_, absl::Seconds(10));
    stub_.PrepareBidiStreamingCall(&context_,
                                   "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                   grpc::StubOptions(), this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (ok) StartWritesDone();
  }
  void OnReadDone(bool ok) override {
    if (ok) bytes_ = Flatten(response_);
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }

  absl::StatusOr<std::string> Result() {
    done_.WaitForNotification();
    if (!status_.ok()) return FromGrpcStatus(status_);
    return bytes_;
  }

 private:
  grpc::GenericStub stub_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::string bytes_;
  grpc::Status status_;
  absl::Notification done_;
};

}  // namespace

absl::StatusOr<std::string> ReflectionListServices(const std::shared_ptr<grpc::Channel>& channel) {
  ReflectionCall call(channel);
  return call.Result();
}

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

absl::StatusOr<std::string> ScrapeMetrics(int port, absl::Duration timeout) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  const timeval read_timeout = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &read_timeout, sizeof(read_timeout));
  const absl::Time deadline = absl::Now() + timeout;
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("write failed");
  }
  std::string reply;
  char buffer[4096];
  ssize_t n = 0;
  while (absl::Now() < deadline && (n = read(fd, buffer, sizeof(buffer))) > 0) {
    reply.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (n != 0) {
    return absl::DeadlineExceededError(absl::StrCat("no whole /metrics reply within ",
                                                    absl::FormatDuration(timeout), ": ",
                                                    reply.substr(0, 100)));
  }
  const size_t body = reply.find("\r\n\r\n");
  if (reply.rfind("HTTP/1.", 0) != 0 || body == std::string::npos) {
    return absl::InternalError(absl::StrCat("not an HTTP reply: ", reply.substr(0, 100)));
  }
  if (reply.find(" 200 ") == std::string::npos || reply.find(" 200 ") > body) {
    return absl::InternalError(absl::StrCat("HTTP error: ", reply.substr(0, reply.find('\r'))));
  }
  return reply.substr(body + 4);
}

void SidecarTest::SetUp() { origin_ = TestOrigin::Start(); }

void SidecarTest::TearDown() {
  stub_.reset();
  channel_.reset();
  if (sidecar_ != nullptr) sidecar_->Shutdown();
  sidecar_.reset();
  origin_.reset();
}

ServerConfig SidecarTest::BaseConfig() const {
  ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.origin = origin_->url();
  config.drain_timeout = absl::Seconds(2);
  return config;
}

void SidecarTest::StartServer(const ServerConfig& config) {
  absl::StatusOr<std::unique_ptr<Sidecar>> sidecar = Sidecar::Start(config);
  ASSERT_TRUE(sidecar.ok()) << sidecar.status();
  sidecar_ = *std::move(sidecar);
  channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", sidecar_->port()),
                                 grpc::InsecureChannelCredentials());
  stub_ = v1::Cache::NewStub(channel_);
}

grpc::Status SidecarTest::Get(const std::string& key, v1::GetResponse* response,
                              absl::Duration timeout) {
  grpc::ClientContext context;
  SetTimeout(context, timeout);
  v1::GetRequest request;
  request.set_key(key);
  return stub_->Get(&context, request, response);
}

std::unique_ptr<PendingGet> SidecarTest::StartGet(const std::string& key, absl::Duration timeout) {
  auto call = std::make_unique<PendingGet>();
  SetTimeout(call->context, timeout);
  call->request.set_key(key);
  PendingGet* c = call.get();
  stub_->async()->Get(&c->context, &c->request, &c->response, [c](grpc::Status status) {
    c->status = std::move(status);
    c->done.Notify();
  });
  return call;
}

grpc::Status SidecarTest::BatchGet(const std::vector<std::string>& keys,
                                   v1::BatchGetResponse* response, absl::Duration timeout) {
  grpc::ClientContext context;
  SetTimeout(context, timeout);
  v1::BatchGetRequest request;
  for (const std::string& key : keys) request.add_keys(key);
  return stub_->BatchGet(&context, request, response);
}

std::unique_ptr<PendingBatchGet> SidecarTest::StartBatchGet(const std::vector<std::string>& keys,
                                                            absl::Duration timeout) {
  auto call = std::make_unique<PendingBatchGet>();
  SetTimeout(call->context, timeout);
  for (const std::string& key : keys) call->request.add_keys(key);
  PendingBatchGet* c = call.get();
  stub_->async()->BatchGet(&c->context, &c->request, &c->response, [c](grpc::Status status) {
    c->status = std::move(status);
    c->done.Notify();
  });
  return call;
}

grpc::Status SidecarTest::Invalidate(const std::vector<std::string>& keys, int64_t* removed) {
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::InvalidateRequest request;
  for (const std::string& key : keys) request.add_keys(key);
  v1::InvalidateResponse response;
  grpc::Status status = stub_->Invalidate(&context, request, &response);
  *removed = response.removed();
  return status;
}

grpc::Status SidecarTest::Stats(v1::StatsResponse* response) {
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  return stub_->Stats(&context, v1::StatsRequest(), response);
}

bool SidecarTest::WaitForStats(const std::function<bool(const FlightCacheStats&)>& condition,
                               absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition(sidecar_->stats())) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace flightcache::testing
