// flightcache-noop-server: the baseline of the end-to-end "hits" benchmark (bench/e2e/hits.sh).
//
// It implements flightcache.v1.Cache on the same gRPC library and in the same style as
// flightcache-server (callback API, one ServerUnaryReactor per call, health service, SO_REUSEPORT
// off), but answers every Get at once with a fixed value and SOURCE_HIT: no cache lookup, no
// locks, no metrics. The load generator's throughput against it is therefore the ceiling that
// gRPC, the kernel's loopback and the load generator itself impose on this machine, and the hits
// benchmark reports flightcache-server's hit path as a fraction of it.
//
// BatchGet answers every key the same way, Invalidate removes nothing and Stats counts only
// requests, so that flightcache-loadgen and flightcache-cli work against it unchanged.
//
// Usage:
//   flightcache-noop-server --listen=127.0.0.1:0 --value-bytes=100
// Logs "flightcache-noop-server listening on ADDR (port N)" to stderr once serving; SIGTERM or
// SIGINT stop it (exit 0). Exit 2: bad flag; 1: cannot listen.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/support/flags.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "server/grpc_listener.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50061", "HOST:PORT to serve on; port 0 picks one.");
ABSL_FLAG(int64_t, value_bytes, 100, "Size of the fixed value every Get answers with.");

namespace flightcache::bench {
namespace {

namespace pb = ::flightcache::v1;

class NoopCacheService final : public pb::Cache::CallbackService {
 public:
  explicit NoopCacheService(std::string value) : value_(std::move(value)) {}
  NoopCacheService(const NoopCacheService&) = delete;
  NoopCacheService& operator=(const NoopCacheService&) = delete;

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context, const pb::GetRequest* request,
                                pb::GetResponse* response) override {
    requests_.fetch_add(1, std::memory_order_relaxed);
    response->set_value(value_);
    response->set_source(pb::SOURCE_HIT);
    response->set_ttl_remaining_ms(60'000);
    // The default reactor is the cheapest way to finish a callback call at once, which is what a
    // hit in flightcache-server does too (its reactor finishes inside the method handler).
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* BatchGet(grpc::CallbackServerContext* context,
                                     const pb::BatchGetRequest* request,
                                     pb::BatchGetResponse* response) override {
    requests_.fetch_add(request->keys_size(), std::memory_order_relaxed);
    for (const std::string& key : request->keys()) {
      pb::KeyResult* result = response->add_results();
      result->set_key(key);
      result->set_value(value_);
      result->set_source(pb::SOURCE_HIT);
      result->set_ttl_remaining_ms(60'000);
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Invalidate(grpc::CallbackServerContext* context,
                                       const pb::InvalidateRequest* request,
                                       pb::InvalidateResponse* response) override {
    response->set_removed(0);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  // Counts requests and hits only: every other counter is 0, which is the truth for this server.
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const pb::StatsRequest* request,
                                  pb::StatsResponse* response) override {
    const int64_t n = requests_.load(std::memory_order_relaxed);
    response->set_requests(n);
    response->set_hits(n);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const std::string value_;
  std::atomic<int64_t> requests_{0};  // relaxed: a statistic that orders nothing
};

int Main(int argc, char** argv) {
  // As flightcache-server does: Debian builds Abseil with mutex deadlock detection on, which
  // roughly doubles the cost of every absl::Mutex lock, gRPC's own included. A baseline or a
  // probe that paid it while the server does not would skew the comparison.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "flightcache-noop-server: a flightcache.v1.Cache that answers every Get at once with a "
      "fixed value (SOURCE_HIT); the baseline of bench/e2e/hits.sh.\n"
      "  flightcache-noop-server --listen=127.0.0.1:0 --value-bytes=100");
  support::ParseFlagsWithoutArgumentsOrExit(argc, argv, "bench/");
  const int64_t value_bytes = absl::GetFlag(FLAGS_value_bytes);
  if (value_bytes < 0 || value_bytes > (int64_t{4} << 20)) {
    std::fprintf(stderr, "flightcache-noop-server: --value-bytes must be in [0, 4 MiB]\n");
    return 2;
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);

  // Blocked before gRPC starts its threads (they inherit the mask), then taken with sigwait, as
  // flightcache-server does: no asynchronous signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  NoopCacheService service(std::string(static_cast<size_t>(value_bytes), 'v'));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  absl::StatusOr<GrpcServer> grpc_server = StartGrpcServer(builder, listen);
  if (!grpc_server.ok()) {
    std::fprintf(stderr, "flightcache-noop-server: %s\n",
                 std::string(grpc_server.status().message()).c_str());
    return 1;
  }
  const std::unique_ptr<grpc::Server> server = std::move(grpc_server->server);
  const int port = grpc_server->port;
  server->GetHealthCheckService()->SetServingStatus(pb::Cache::service_full_name(), true);
  server->GetHealthCheckService()->SetServingStatus(true);
  std::fprintf(stderr, "flightcache-noop-server listening on %s (port %d), value_bytes %lld\n",
               listen.c_str(), port, static_cast<long long>(value_bytes));

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server->GetHealthCheckService()->SetServingStatus(false);
  // Every call finishes inside its handler, so there is nothing to drain.
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace flightcache::bench

int main(int argc, char** argv) { return flightcache::bench::Main(argc, argv); }
