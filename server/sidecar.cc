#include "server/sidecar.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/server_builder.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/admin_token_file.h"
#include "server/dns_replicas.h"
#include "server/grpc_listener.h"
#include "server/origin_factory.h"

namespace flightcache {
namespace {

// A connection that has not completed its HTTP/2 handshake (the client's preface and SETTINGS)
// by then is closed: idle connections that never speak gRPC cost a descriptor each, and gRPC's
// default keeps them for 120 s.
constexpr int kHandshakeTimeoutMs = 10'000;

// /metrics (civetweb behind prometheus::Exposer) serves one connection per worker thread, and a
// worker waits for a connection's request for up to request_timeout_ms (civetweb's default:
// 30 s). With prometheus-cpp's 2 threads, two idle connections made every scrape wait ~30 s.
// More workers let a scrape through while some clients are slow or idle; the timeout bounds how
// long even more of them can hold every worker (below Prometheus's default scrape timeout, 10 s).
constexpr int kMetricsWorkerThreads = 32;
// Threads that run what callers' deadlines trigger (see CacheServiceOptions::deadline_workers).
// A leave is short unless it waits inside gRPC; four let three such waits pass at once.
constexpr int kDeadlineWorkerThreads = 4;
constexpr int kMetricsRequestTimeoutMs = 5'000;
// Threads that answer a load's waiters beside the one that completed the load: one per core less
// that one, so a wake of many waiters runs on every core; at least one, and at most 7 (the
// answers to one client connection go out through one HTTP/2 transport, one writer at a time).
constexpr int kMaxWakeWorkerThreads = 7;
int WakeWorkerThreads() {
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()) - 1, 1,
                    kMaxWakeWorkerThreads);
}
// Threads that run the fleet tier's callbacks, which may complete a flight and answer all of its
// waiters: never the Redis loop's own thread.
constexpr int kFleetWorkerThreads = 2;

// A client's third ping too soon (see --keepalive-min-time) closes its connection: gRPC's default,
// written here because the flag's meaning depends on it.
constexpr int kMaxPingStrikes = 2;

int ToChannelArgMs(absl::Duration d) {
  return static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

// Keepalive enforcement and connection age (ServerConfig explains each).
void AddConnectionBounds(const ServerConfig& config, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ToChannelArgMs(config.keepalive_min_time));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kMaxPingStrikes);
  if (config.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               ToChannelArgMs(config.max_connection_age));
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
        static_cast<int>(absl::ToInt64Milliseconds(config.max_connection_age_grace)));
  }
}

// Starts `builder`'s server on --listen. A unix: socket is bound privately and then published
// with --listen-socket-mode (see PrivateUnixSocket); `unix_socket` keeps it until the server has
// stopped.
absl::StatusOr<GrpcServer> Listen(const ServerConfig& config, grpc::ServerBuilder& builder,
                                  std::shared_ptr<grpc::ServerCredentials> credentials,
                                  std::unique_ptr<PrivateUnixSocket>& unix_socket) {
  std::string bind_address = config.listen;
  if (absl::string_view path = config.listen; absl::ConsumePrefix(&path, "unix:")) {
    absl::StatusOr<std::unique_ptr<PrivateUnixSocket>> socket =
        PrivateUnixSocket::Prepare(std::string(path));
    if (!socket.ok()) {
      return absl::UnavailableError(absl::StrCat("--listen: ", socket.status().message()));
    }
    unix_socket = *std::move(socket);
    bind_address = absl::StrCat("unix:", unix_socket->bind_path());
  }
  absl::StatusOr<GrpcServer> server =
      StartGrpcServer(builder, bind_address, std::move(credentials));
  if (!server.ok()) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", config.listen,
                                               " (address in use or not local?)"));
  }
  if (unix_socket != nullptr) {
    if (absl::Status published = unix_socket->Publish(config.listen_socket_mode); !published.ok()) {
      server->server->Shutdown(std::chrono::system_clock::now());
      server->server->Wait();
      return absl::UnavailableError(absl::StrCat("--listen: ", published.message()));
    }
  }
  return server;
}

// How often the trimmer looks at RSS to decide whether to trim (see memory_trimmer.h).
constexpr absl::Duration kMemoryTrimInterval = absl::Seconds(5);
// How often --admin-token-file is re-read: a rotated token is in force within this.
constexpr absl::Duration kAdminTokenPollInterval = absl::Seconds(1);

std::string FormatStats(const FlightCacheStats& s) {
  return absl::StrCat("requests=", s.requests, " hits=", s.hits, " negative_hits=", s.negative_hits,
                      " misses=", s.misses, " coalesced=", s.coalesced,
                      " loads_started=", s.loads_started, " loads_succeeded=", s.loads_succeeded,
                      " loads_failed=", s.loads_failed, " loads_cancelled=", s.loads_cancelled,
                      " origin_fetches=", s.origin_fetches, " hedges_sent=", s.hedges_sent,
                      " hedges_won=", s.hedges_won, " loads_inflight=", s.loads_inflight,
                      " loads_queued=", s.loads_queued, " entries=", s.entries, " bytes=", s.bytes,
                      " evictions=", s.evictions);
}

}  // namespace

// The FlightCache takes one observer: this one feeds both the metrics and the failure log.
class Sidecar::Observer final : public LoadObserver {
 public:
  Observer(Metrics& metrics, OriginFailureLog& failures) : metrics_(metrics), failures_(failures) {}

  void OnFetchDone(uint32_t attempt, absl::Duration latency, const absl::Status& status) override {
    metrics_.OnFetchDone(attempt, latency, status);
    failures_.Record(attempt, status);
  }

 private:
  Metrics& metrics_;
  OriginFailureLog& failures_;
};

Sidecar::Sidecar(const ServerConfig& config) : config_(config) {}

absl::StatusOr<std::unique_ptr<Sidecar>> Sidecar::Start(const ServerConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  absl::StatusOr<OriginSpec> spec = ParseOriginUrl(config.origin);
  if (!spec.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--origin: ", spec.status().message()));
  }

  std::unique_ptr<Sidecar> sidecar(new Sidecar(config));
  Sidecar& s = *sidecar;
  s.metrics_ = std::make_unique<Metrics>();
  s.deadline_workers_ = std::make_unique<WorkerPool>(kDeadlineWorkerThreads);
  s.wake_workers_ = std::make_unique<WorkerPool>(WakeWorkerThreads());
  s.timers_ = std::make_unique<ThreadTimerQueue>(MonotonicClock::Get(), s.metrics_.get());
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> origin_tls =
      config.OriginTlsCredentials();
  if (!origin_tls.ok()) return origin_tls.status();
  const GrpcOriginOptions grpc_options{
      .max_response_bytes = config.OriginMaxResponseBytes(),
      .cancelled_fetch_grace = config.cancelled_fetch_grace,
      .on_garbage_reply = [metrics = s.metrics_.get()] { metrics->RecordOriginGarbageReply(); },
      .tls_credentials = *std::move(origin_tls)};
  absl::StatusOr<std::unique_ptr<Origin>> origin =
      CreateOrigin(*spec, *s.timers_, grpc_options, config.origin_replicas,
                   [metrics = s.metrics_.get()](const std::string& replica, absl::Duration latency,
                                                const absl::Status&) {
                     metrics->RecordReplicaFetch(replica, latency);
                   });
  if (!origin.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--origin: ", origin.status().message()));
  }
  s.origin_ = *std::move(origin);
  // Several replicas: per-replica series, before the first fetch can finish.
  if (auto* replicas = dynamic_cast<ReplicaSet*>(s.origin_.get())) {
    std::vector<std::string> names;
    for (const ReplicaStats& r : replicas->stats()) names.push_back(r.name);
    s.metrics_->SetReplicaNames(names);
    s.metrics_->SetReplicaSource([replicas] { return replicas->stats(); });
    if (!spec->dns_name.empty()) {
      s.dns_replicas_ = std::make_unique<DnsReplicaWatcher>(
          DnsReplicaOptions{.name = spec->dns_name,
                            .port = spec->dns_port,
                            .refresh = config.origin_dns_refresh,
                            .on_change =
                                [metrics = s.metrics_.get()](const std::vector<std::string>& now) {
                                  metrics->SetReplicaNames(now);
                                }},
          *replicas, MakeReplicaMaker(*spec, *s.timers_, grpc_options));
      s.dns_replicas_->Start();
    }
  }
  s.failure_log_ = std::make_unique<OriginFailureLog>(s.origin_->Describe());
  s.observer_ = std::make_unique<Observer>(*s.metrics_, *s.failure_log_);
  if (absl::Status fleet = s.StartFleet(); !fleet.ok()) return fleet;
  // TTL checks on the hit path read the coarse clock: a few ms of expiry slack for a cheaper read.
  s.cache_ =
      std::make_unique<FlightCache>(config.cache, *s.origin_, *s.timers_, s.observer_.get(),
                                    &CoarseClock::Get(), s.fleet_.get(), s.wake_workers_.get());
  s.metrics_->SetStatsSource([cache = s.cache_.get()] { return cache->stats(); });
  if (config.admin_token_file.empty()) {
    s.admin_ = std::make_unique<AdminGuard>(AdminGuard::LocalPeersOnly());
  } else {
    absl::StatusOr<std::unique_ptr<AdminTokenFile>> admin =
        AdminTokenFile::Open(config.admin_token_file, {.poll_interval = kAdminTokenPollInterval});
    if (!admin.ok()) return admin.status();
    s.admin_ = *std::move(admin);
  }
  s.service_ = std::make_unique<CacheService>(
      *s.cache_,
      CacheServiceOptions{.max_batch_keys = config.max_batch_keys,
                          .max_key_bytes = config.cache.max_key_bytes,
                          .deadline_timers = s.timers_.get(),
                          .deadline_workers = s.deadline_workers_.get(),
                          .admin = s.admin_.get()},
      s.metrics_.get());

  if (!config.metrics_listen.empty()) {
    try {
      s.exposer_ = std::make_unique<prometheus::Exposer>(
          std::vector<std::string>{"listening_ports", config.metrics_listen, "num_threads",
                                   std::to_string(kMetricsWorkerThreads), "request_timeout_ms",
                                   std::to_string(kMetricsRequestTimeoutMs)});
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("--metrics-listen: cannot listen on ",
                                                 config.metrics_listen, ": ", e.what()));
    }
    s.exposer_->RegisterCollectable(s.metrics_->collectable());
    const std::vector<int> ports = s.exposer_->GetListeningPorts();
    s.metrics_port_ = ports.empty() ? 0 : ports.front();
  }

  grpc::EnableDefaultHealthCheckService(true);
  static absl::once_flag reflection_once;  // the plugin registers itself process-wide
  absl::call_once(reflection_once, grpc::reflection::InitProtoReflectionServerBuilderPlugin);
  grpc::ServerBuilder builder;
  builder.RegisterService(s.service_.get());
  builder.SetMaxReceiveMessageSize(config.MaxRequestBytes());
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, kHandshakeTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(config.max_concurrent_streams));
  AddConnectionBounds(config, builder);
  grpc::ResourceQuota quota("flightcache-server");
  quota.Resize(static_cast<size_t>(config.grpc_memory_limit_bytes));
  builder.SetResourceQuota(quota);
  std::shared_ptr<grpc::ServerCredentials> credentials;  // plaintext unless --tls-cert-file
  if (!config.tls.cert_file.empty()) {
    absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> tls =
        TlsListenerCredentials::Start(config.tls);
    if (!tls.ok()) return tls.status();
    s.tls_ = *std::move(tls);
    credentials = s.tls_->credentials();
  }
  absl::StatusOr<GrpcServer> grpc_server = Listen(config, builder, credentials, s.unix_socket_);
  if (!grpc_server.ok()) return grpc_server.status();
  s.server_ = std::move(grpc_server->server);
  s.port_ = grpc_server->port;
  s.trimmer_ =
      std::make_unique<MemoryTrimmer>(kMemoryTrimInterval, TrimMallocHeap, ResidentBytes,
                                      [cache = s.cache_.get()] { return cache->stats().requests; });
  // "" is the whole server; the Cache service is named too, for clients that check it by name.
  grpc::HealthCheckServiceInterface* health = s.server_->GetHealthCheckService();
  health->SetServingStatus(v1::Cache::service_full_name(), true);
  health->SetServingStatus(true);

  const int64_t per_shard =
      config.cache.store.capacity_bytes / std::max(1, config.cache.store.shard_count);
  if (config.cache.max_value_bytes > per_shard) {
    spdlog::warn(
        "values larger than about {} bytes (--capacity-bytes / {} shards) are served but never "
        "cached; --max-value-bytes is {}",
        per_shard, config.cache.store.shard_count, config.cache.max_value_bytes);
  }
  spdlog::info("flightcache-server listening on {} (port {}), metrics {}; origin {}; config: {}",
               config.listen, s.port_,
               config.metrics_listen.empty()
                   ? std::string("disabled")
                   : absl::StrCat("on http://", config.metrics_listen, "/metrics (port ",
                                  s.metrics_port_, ")"),
               s.origin_->Describe(), config.Describe());
  return sidecar;
}

absl::Status Sidecar::StartFleet() {
  if (config_.fleet.empty()) return absl::OkStatus();
  absl::StatusOr<RedisOptions> redis = config_.FleetRedisOptions();
  if (!redis.ok()) return redis.status();
  fleet_loop_ = std::make_unique<EventLoop>("fleet-loop");
  fleet_workers_ = std::make_unique<WorkerPool>(kFleetWorkerThreads);
  // Runs on the loop thread only: reads both connections' states and logs each change once.
  auto log_state = [this, last = std::make_shared<std::string>()] {
    const RedisFleetStore* store = fleet_for_log_.load(std::memory_order_acquire);
    if (store == nullptr) return;  // still being built: the look posted below logs it
    const RedisFleetStoreStats stats = store->stats();
    const bool up = stats.commands_state == RedisState::kConnected &&
                    stats.subscriber_state == RedisState::kConnected;
    const std::string now =
        up ? "connected"
           : absl::StrCat("commands ", RedisStateName(stats.commands_state), ", subscriber ",
                          RedisStateName(stats.subscriber_state));
    if (now == *last) return;
    *last = now;
    if (up) {
      spdlog::info("fleet tier connected to {}", config_.fleet);
    } else {
      spdlog::warn("fleet tier not usable ({}): going on alone until Redis is back", now);
    }
  };
  fleet_ = std::make_unique<RedisFleetStore>(
      *fleet_loop_, *redis, *fleet_workers_,
      RedisFleetStoreOptions{
          .key_prefix = config_.fleet_key_prefix,
          .on_call =
              [metrics = metrics_.get()](absl::StatusCode code, absl::Duration latency) {
                metrics->RecordRedisCall(code == absl::StatusCode::kOk, latency);
              },
          .on_state_change = log_state});
  fleet_for_log_.store(fleet_.get(), std::memory_order_release);
  // A state change may have come before the store was published: look once more.
  fleet_loop_->Post(std::move(log_state));
  metrics_->SetFleetSource([store = fleet_.get()] {
    const RedisFleetStoreStats s = store->stats();
    return FleetMetricsSnapshot{
        .commands_connected = s.commands_state == RedisState::kConnected,
        .subscriber_connected = s.subscriber_state == RedisState::kConnected,
        .invalidations_sent = s.invalidations_sent,
        .announcements_received = s.announcements_received,
        .announcements_malformed = s.announcements_malformed,
        .resubscriptions = s.resubscriptions};
  });
  return absl::OkStatus();
}

Sidecar::~Sidecar() { Shutdown(); }

void Sidecar::BeginDrain() {
  if (service_ == nullptr || server_ == nullptr) return;
  if (!service_->BeginDrain()) return;  // someone else already did
  server_->GetHealthCheckService()->SetServingStatus(false);
  spdlog::info("draining: health is NOT_SERVING and new calls get UNAVAILABLE; {} calls in flight",
               service_->calls_in_flight());
}

void Sidecar::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ == nullptr) return;  // Start() failed before serving: nothing to drain
  BeginDrain();
  const absl::Time deadline = absl::Now() + config_.drain_timeout;
  // Calls in flight finish on their own (the server keeps answering health checks and turning
  // new calls away meanwhile); polling is fine here, this runs once per process.
  while (service_->calls_in_flight() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  const int64_t left = service_->calls_in_flight();
  if (left > 0) {
    spdlog::warn("drain timeout ({}) passed with {} calls in flight: cancelling them",
                 absl::FormatDuration(config_.drain_timeout), left);
  }
  // Our calls are done (or out of time): stop now. Passing "now" rather than the drain deadline
  // matters: gRPC would otherwise also wait for idle client connections to acknowledge its
  // GOAWAY, which an idle C++ client does only when its backup poller runs (every 5 s). Whatever
  // still runs (a call past the drain timeout, a health Watch stream) is cancelled.
  spdlog::debug("stopping the gRPC server");
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  spdlog::debug("gRPC server stopped; stopping the metrics endpoint");
  exposer_.reset();
  spdlog::info("flightcache-server stopped: {}", FormatStats(cache_->stats()));
}

}  // namespace flightcache
