// Helpers for integration tests that run a Sidecar in-process against a TestOrigin: a fixture
// that starts both on loopback ports, blocking and asynchronous Cache calls, a hand-rolled
// grpc.health.v1.Health/Check, and a /metrics scrape.
//
// Thread-safety: a fixture is used by one test thread; PendingCall objects complete on gRPC
// threads and are read after their `done` notification.
#ifndef FLIGHTCACHE_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_
#define FLIGHTCACHE_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/sidecar.h"
#include "tests/testing/test_origin.h"

namespace flightcache::testing {

inline void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
}

// One asynchronous unary call on the callback stub.
template <typename Request, typename Response>
struct PendingCall {
  grpc::ClientContext context;
  Request request;
  Response response;
  grpc::Status status;
  absl::Notification done;

  // Waits (bounded) for the call to finish; false if it did not.
  bool Wait(absl::Duration timeout = absl::Seconds(30)) {
    return done.WaitForNotificationWithTimeout(timeout);
  }
};
using PendingGet = PendingCall<v1::GetRequest, v1::GetResponse>;
using PendingBatchGet = PendingCall<v1::BatchGetRequest, v1::BatchGetResponse>;

// grpc.health.v1.Health/Check for `service` ("" = the whole server), as flightcache-cli makes it
// (client/cli/health_check.h). Returns the ServingStatus number: 1 SERVING, 2 NOT_SERVING.
absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service = "");

// One unary call of `method` ("/package.Service/Method") whose request is `request`'s bytes as
// they are, over a generic stub; the reply's bytes go to *reply (if not null).
grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                          const std::string& request, std::string* reply = nullptr,
                          absl::Duration timeout = absl::Seconds(10));

// Asks grpc.reflection.v1alpha.ServerReflection for list_services (a bidi stream over a generic
// stub) and returns the raw response bytes, which contain every service name.
absl::StatusOr<std::string> ReflectionListServices(const std::shared_ptr<grpc::Channel>& channel);

// A TCP connection to 127.0.0.1:`port` (close-on-exec), or -1 if connect() failed.
int ConnectLoopback(int port);

// GET http://127.0.0.1:port/metrics; the body, or an error (DEADLINE_EXCEEDED if the reply did
// not come within `timeout`).
absl::StatusOr<std::string> ScrapeMetrics(int port, absl::Duration timeout = absl::Seconds(30));

class SidecarTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Loopback port 0, metrics off, origin = the TestOrigin, a short drain timeout.
  ServerConfig BaseConfig() const;
  void StartServer(const ServerConfig& config);
  void StartServer() { StartServer(BaseConfig()); }

  grpc::Status Get(const std::string& key, v1::GetResponse* response,
                   absl::Duration timeout = absl::Seconds(10));
  std::unique_ptr<PendingGet> StartGet(const std::string& key,
                                       absl::Duration timeout = absl::Seconds(10));
  grpc::Status BatchGet(const std::vector<std::string>& keys, v1::BatchGetResponse* response,
                        absl::Duration timeout = absl::Seconds(10));
  std::unique_ptr<PendingBatchGet> StartBatchGet(const std::vector<std::string>& keys,
                                                 absl::Duration timeout = absl::Seconds(10));
  grpc::Status Invalidate(const std::vector<std::string>& keys, int64_t* removed);
  grpc::Status Stats(v1::StatsResponse* response);

  // Polls the server's stats (every 2 ms) until `condition` holds; false after `timeout`.
  bool WaitForStats(const std::function<bool(const FlightCacheStats&)>& condition,
                    absl::Duration timeout = absl::Seconds(20));

  std::unique_ptr<TestOrigin> origin_;
  std::unique_ptr<Sidecar> sidecar_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Cache::Stub> stub_;
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_
