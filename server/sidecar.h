// Sidecar: the whole flightcache-server, wired and running — so main() and integration tests
// start exactly the same thing.
//
// Start() validates the config, builds the origin, the FlightCache, the metrics and the
// flightcache.v1.Cache service, then serves it with grpc.health.v1.Health (SERVING) and server
// reflection on --listen (gRPC bounded by --max-concurrent-streams and --grpc-memory-limit), and
// /metrics on --metrics-listen; a MemoryTrimmer hands freed heap back to the kernel after RSS grew.
// Port 0 picks a free port; port() and metrics_port() report the bound ones.
//
// Shutdown() drains as the spec says: health turns NOT_SERVING and new calls get UNAVAILABLE
// (BeginDrain), calls in flight may finish until --drain-timeout has passed, then whatever is
// left is cancelled and the server stops; finally a summary of the stats is logged.
//
// Thread-safety: every method is thread-safe. Lifetime: the destructor calls Shutdown() and then
// tears down in dependency order (metrics endpoint, server, service, cache, origin, metrics,
// timers).
//
// Usage:
//   absl::StatusOr<std::unique_ptr<Sidecar>> sidecar = Sidecar::Start(config);
//   if (!sidecar.ok()) return Fail(sidecar.status());
//   ... (*sidecar)->port() ...
//   (*sidecar)->Shutdown();
#ifndef FLIGHTCACHE_SERVER_SIDECAR_H_
#define FLIGHTCACHE_SERVER_SIDECAR_H_

#include <grpcpp/server.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/flight_cache.h"
#include "flightcache/origin.h"
#include "flightcache/timer_queue.h"
#include "flightcache/worker_pool.h"
#include "server/admin_guard.h"
#include "server/cache_service.h"
#include "server/config.h"
#include "server/dns_replicas.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_fleet_store.h"
#include "server/logging.h"
#include "server/memory_trimmer.h"
#include "server/metrics.h"
#include "server/tls_listener.h"
#include "server/unix_socket.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace flightcache {

class Sidecar final {
 public:
  // Fails (and binds nothing, or releases what it bound) if the config is invalid or a listen
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Sidecar>> Start(const ServerConfig& config);
  ~Sidecar();
  Sidecar(const Sidecar&) = delete;
  Sidecar& operator=(const Sidecar&) = delete;

  // The bound gRPC port (for a unix: address, whatever gRPC reports for it).
  int port() const { return port_; }
  // The bound /metrics port, or 0 when metrics are disabled.
  int metrics_port() const { return metrics_port_; }
  const ServerConfig& config() const { return config_; }

  // Health turns NOT_SERVING and new calls get UNAVAILABLE; calls in flight go on. Idempotent.
  void BeginDrain();
  // BeginDrain(), waits up to --drain-timeout for calls in flight, then stops the server
  // (cancelling what is left) and logs a summary. Idempotent; blocks until done.
  void Shutdown();

  FlightCacheStats stats() const { return cache_->stats(); }
  FlightCache& cache() { return *cache_; }
  const Metrics& metrics() const { return *metrics_; }

 private:
  class Observer;
  explicit Sidecar(const ServerConfig& config);
  // Connects the fleet tier (--fleet); its state changes are logged once each.
  absl::Status StartFleet();

  const ServerConfig config_;
  // Declared in dependency order: destroyed from the bottom up.
  std::unique_ptr<Metrics> metrics_;  // the timer thread and the origin report into it
  // Outlives the timer thread, which posts to it; its tasks left at shutdown only find their
  // calls answered (every call has finished by then).
  std::unique_ptr<WorkerPool> deadline_workers_;
  // Answer a load's waiters beside the thread that completed it (FlightCache's wake_workers);
  // outlive the cache, which waits for the batches they run.
  std::unique_ptr<WorkerPool> wake_workers_;
  std::unique_ptr<ThreadTimerQueue> timers_;
  std::unique_ptr<Origin> origin_;
  std::unique_ptr<DnsReplicaWatcher> dns_replicas_;  // with dns:///: fills origin_'s replicas
  std::unique_ptr<OriginFailureLog> failure_log_;
  // The fleet tier (--fleet), or null. The cache uses the store and is destroyed first; the store
  // runs its callbacks on the pool and its I/O on the loop, which outlive it.
  std::unique_ptr<EventLoop> fleet_loop_;
  std::unique_ptr<WorkerPool> fleet_workers_;
  std::unique_ptr<RedisFleetStore> fleet_;
  std::atomic<const RedisFleetStore*> fleet_for_log_{nullptr};  // fleet_, for its loop thread
  std::unique_ptr<Observer> observer_;
  std::unique_ptr<FlightCache> cache_;
  std::unique_ptr<AdminCheck> admin_;  // Invalidate's; outlives service_
  std::unique_ptr<CacheService> service_;
  std::unique_ptr<TlsListenerCredentials> tls_;  // --tls-*, or null; outlives server_
  // --listen=unix:PATH, or null; removes the socket file after server_ has stopped.
  std::unique_ptr<PrivateUnixSocket> unix_socket_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<MemoryTrimmer> trimmer_;
  int port_ = 0;
  int metrics_port_ = 0;

  absl::Mutex shutdown_mu_;  // held for the whole of Shutdown(), so a second caller waits
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_SIDECAR_H_
