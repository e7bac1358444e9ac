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
// Hold mode (--hold=D, the baseline of bench/e2e/waiters.sh): a Get that arrives while no Get is
// held opens a wave due D later; every Get that arrives before then joins that wave, and the wave
// is answered all at once when due — the shape of callers coalesced on one load that takes D,
// with no cache, no flight and no per-call state of ours beyond one pointer. Its RSS per held
// call is therefore what this gRPC library itself needs to hold a call open doing nothing. One
// thread (not one per call) waits for the wave and finishes its calls.
//
// Usage:
//   flightcache-noop-server --listen=127.0.0.1:0 --value-bytes=100 [--hold=3s]
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
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/support/flags.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "server/grpc_listener.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50061", "HOST:PORT to serve on; port 0 picks one.");
ABSL_FLAG(int64_t, value_bytes, 100, "Size of the fixed value every Get answers with.");
ABSL_FLAG(absl::Duration, hold, absl::ZeroDuration(),
          "Hold mode: answer Gets in waves, each wave D after its first Get arrived (0: at once).");

namespace flightcache::bench {
namespace {

namespace pb = ::flightcache::v1;

// Hold mode's waves of held Gets. A wave opens with the first Get held while none is, and is
// finished, every call of it, by the releasing thread when due.
class HeldCalls {
 public:
  explicit HeldCalls(absl::Duration hold) : hold_(hold), releaser_([this] { Release(); }) {}
  ~HeldCalls() { Stop(); }
  HeldCalls(const HeldCalls&) = delete;
  HeldCalls& operator=(const HeldCalls&) = delete;

  // Holds the call until its wave is due; after Stop(), answers it at once.
  void Hold(grpc::ServerUnaryReactor* reactor) {
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        if (wave_.empty()) due_ = absl::Now() + hold_;
        wave_.push_back(reactor);
        return;
      }
    }
    reactor->Finish(grpc::Status::OK);
  }

  // Answers the calls held now, and every later one at once. Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (releaser_.joinable()) releaser_.join();
  }

 private:
  // Waits for a wave, then until it is due (or shutdown: then at once), and finishes its calls.
  void Release() {
    for (;;) {
      std::vector<grpc::ServerUnaryReactor*> wave;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](HeldCalls* self) { return self->stopping_ || !self->wave_.empty(); }, this));
        if (wave_.empty()) return;  // stopping, nothing held
        mu_.AwaitWithDeadline(absl::Condition(&stopping_), due_);
        wave.swap(wave_);
      }
      for (grpc::ServerUnaryReactor* reactor : wave) reactor->Finish(grpc::Status::OK);
    }
  }

  const absl::Duration hold_;
  absl::Mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> wave_ ABSL_GUARDED_BY(mu_);
  absl::Time due_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread releaser_;  // last: starts once the members it reads exist
};

class NoopCacheService final : public pb::Cache::CallbackService {
 public:
  // `held` (hold mode) may be null: then every Get is answered at once.
  NoopCacheService(std::string value, HeldCalls* held) : value_(std::move(value)), held_(held) {}
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
    if (held_ != nullptr) {
      held_->Hold(reactor);
    } else {
      reactor->Finish(grpc::Status::OK);
    }
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
  HeldCalls* const held_;
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
  const absl::Duration hold = absl::GetFlag(FLAGS_hold);
  if (hold < absl::ZeroDuration() || hold > absl::Minutes(10)) {
    std::fprintf(stderr, "flightcache-noop-server: --hold must be in [0, 10m]\n");
    return 2;
  }

  // Blocked before gRPC starts its threads (they inherit the mask), then taken with sigwait, as
  // flightcache-server does: no asynchronous signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Declared before the server: destroyed after it, once no Get can reach it any more.
  std::unique_ptr<HeldCalls> held;
  if (hold > absl::ZeroDuration()) held = std::make_unique<HeldCalls>(hold);
  NoopCacheService service(std::string(static_cast<size_t>(value_bytes), 'v'), held.get());
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
  std::fprintf(stderr,
               "flightcache-noop-server listening on %s (port %d), value_bytes %lld, hold %s\n",
               listen.c_str(), port, static_cast<long long>(value_bytes),
               absl::FormatDuration(hold).c_str());

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server->GetHealthCheckService()->SetServingStatus(false);
  // Every call finishes inside its handler or with its wave, so there is nothing to drain:
  // stopping the waves answers the held ones now (Wait() waits for every call to finish).
  if (held != nullptr) held->Stop();
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace flightcache::bench

int main(int argc, char** argv) { return flightcache::bench::Main(argc, argv); }
