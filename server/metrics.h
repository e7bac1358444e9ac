// Metrics: the server's Prometheus metrics, served on --metrics-listen at /metrics.
//
// Two kinds of series:
// - recorded as things happen: flightcache_requests_total{method,code} (one per finished RPC),
//   flightcache_batch_keys_total{code} (one per BatchGet key), the origin fetch latency
//   histogram flightcache_origin_fetch_duration_seconds{attempt,result} (this class is the
//   FlightCache's LoadObserver), flightcache_origin_garbage_replies_total (from GrpcOrigin) and
//   flightcache_requests_unread_total{method} (calls whose client left before their request
//   arrived), and the timer thread's flightcache_timer_lateness_seconds and
//   flightcache_timer_callback_seconds (this class is the ThreadTimerQueue's observer);
// - read from FlightCache::stats() at scrape time (the StatsSource): hits, misses, coalesced,
//   loads by outcome, origin fetches, hedges by outcome, loads in flight and queued, cache bytes,
//   entries and evictions. Reading at scrape time keeps the hot path free of extra counters and
//   the figures consistent with the Stats RPC.
//
// Thread-safety: thread-safe. Recording is lock-free after a series' first use.
// Lifetime: the StatsSource must stay callable while anything can scrape (the Sidecar stops the
// HTTP endpoint before it destroys the cache).
//
// Usage:
//   Metrics metrics;
//   FlightCache cache(options, origin, timers, &metrics);
//   metrics.SetStatsSource([&cache] { return cache.stats(); });
//   exposer.RegisterCollectable(metrics.collectable());
#ifndef FLIGHTCACHE_SERVER_METRICS_H_
#define FLIGHTCACHE_SERVER_METRICS_H_

#include <grpcpp/support/status.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/flight_cache.h"
#include "flightcache/replica_set.h"
#include "flightcache/timer_queue.h"

namespace flightcache {

enum class RpcMethod { kGet = 0, kBatchGet, kInvalidate, kStats };

// The fleet tier's own figures (server/fleet/), read at scrape time when --fleet is set.
struct FleetMetricsSnapshot {
  bool commands_connected = false;    // the command connection to Redis is up
  bool subscriber_connected = false;  // the announcement subscription is up
  uint64_t invalidations_sent = 0;
  uint64_t announcements_received = 0;
  uint64_t announcements_malformed = 0;
  uint64_t resubscriptions = 0;
};
inline constexpr int kRpcMethodCount = 4;

class Metrics final : public LoadObserver, public TimerQueueObserver {
 public:
  using StatsSource = std::function<FlightCacheStats()>;

  Metrics();
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  void RecordRequest(RpcMethod method, grpc::StatusCode code);
  void RecordBatchKey(grpc::StatusCode code);
  // An origin reply that was garbage (not a FetchResponse, or a negative ttl_ms).
  void RecordOriginGarbageReply();
  // A call whose client left before its request could be read (it never reached the cache).
  void RecordUnreadRequest(RpcMethod method);

  // LoadObserver:
  void OnFetchDone(uint32_t attempt, absl::Duration latency, const absl::Status& status) override;

  // TimerQueueObserver (the server's one timer thread: caller deadlines, load timeouts, hedges,
  // cancelled-fetch grace):
  void OnTimerFired(const TimerFiring& firing) override;

  // Where scrape-time figures come from; until set, they are left out.
  void SetStatsSource(StatsSource source);
  // With --fleet: the tier's state and counters, read at scrape time, and with them the fleet
  // counters of FlightCacheStats; until set, no fleet series are exported.
  void SetFleetSource(std::function<FleetMetricsSnapshot()> source);
  // One Redis command of the fleet tier answered (`ok`: any reply) after `latency`.
  void RecordRedisCall(bool ok, absl::Duration latency);

  // With several origin replicas: where their counters are read at scrape time.
  void SetReplicaSource(std::function<std::vector<ReplicaStats>()> source);
  // The replicas now (label `replica`), before any of their fetches and again whenever the set
  // changes (dns:///): a new name gets a latency series, a name gone loses its series.
  void SetReplicaNames(const std::vector<std::string>& names);
  // One fetch of replica `replica` finished (ReplicaSet's observer); a name not set is ignored.
  void RecordReplicaFetch(const std::string& replica, absl::Duration latency);

  // Everything, for prometheus::Exposer::RegisterCollectable.
  std::shared_ptr<prometheus::Collectable> collectable() const;

  // The text exposition format of every metric: what /metrics serves (for tests and tools).
  std::string ExpositionText() const;

 private:
  class Collector;
  static constexpr int kCodeCount = 17;  // gRPC status codes 0..16

  prometheus::Counter& RequestCounter(RpcMethod method, grpc::StatusCode code);

  const std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Collector> collectable_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& batch_keys_;
  prometheus::Family<prometheus::Histogram>& fetch_duration_;
  prometheus::Counter& origin_garbage_replies_;
  prometheus::Family<prometheus::Counter>& unread_requests_;
  prometheus::Histogram& timer_lateness_;
  prometheus::Histogram& timer_callback_;
  prometheus::Family<prometheus::Histogram>& redis_call_duration_;
  prometheus::Histogram& redis_call_ok_;
  prometheus::Histogram& redis_call_error_;
  // Series created on first use (Family::Add takes a lock); the pointers are then reused.
  // Acquire/release: a reader that sees the pointer sees the constructed series.
  std::array<std::atomic<prometheus::Counter*>, size_t{kRpcMethodCount} * kCodeCount>
      request_series_{};
  std::array<std::atomic<prometheus::Counter*>, kCodeCount> batch_key_series_{};
  // [attempt: primary, hedge][result: ok, not_found, error, cancelled]
  std::array<std::atomic<prometheus::Histogram*>, 8> fetch_series_{};
  prometheus::Family<prometheus::Histogram>& replica_fetch_duration_;
  // One latency series per current replica (SetReplicaNames()). A lock per origin fetch: far off
  // the hit path, and the set can change under the fetches.
  absl::Mutex replica_mu_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> replica_series_
      ABSL_GUARDED_BY(replica_mu_);
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_METRICS_H_
