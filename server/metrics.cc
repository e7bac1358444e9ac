#include "server/metrics.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <iterator>
#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "server/memory_trimmer.h"
#include "server/status_mapping.h"

namespace flightcache {
namespace {

const char* MethodName(RpcMethod method) {
  switch (method) {
    case RpcMethod::kGet:
      return "Get";
    case RpcMethod::kBatchGet:
      return "BatchGet";
    case RpcMethod::kInvalidate:
      return "Invalidate";
    case RpcMethod::kStats:
      return "Stats";
  }
  return "unknown";
}

int CodeIndex(grpc::StatusCode code) {
  const int i = static_cast<int>(code);
  return (i >= 0 && i < 17) ? i : static_cast<int>(grpc::StatusCode::UNKNOWN);
}

prometheus::MetricFamily Single(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family{std::move(name), std::move(help), type, {}};
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

template <typename T>
T* LoadOrCreate(std::atomic<T*>& slot, absl::FunctionRef<T*()> create) {
  T* series = slot.load(std::memory_order_acquire);
  if (series != nullptr) return series;
  // Family::Add returns the same series for the same labels, so a race here is harmless.
  series = create();
  slot.store(series, std::memory_order_release);
  return series;
}

// From the timer thread's wake-up slack (tens of microseconds) to stalls long enough to matter
// to a caller's deadline.
// Origin fetch latencies: 0.5 ms to 10 s.
prometheus::Histogram::BucketBoundaries FetchBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

prometheus::Histogram::BucketBoundaries TimerBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1};
}

}  // namespace

// The registry's series plus the figures read from FlightCache::stats() at scrape time.
class Metrics::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(std::shared_ptr<prometheus::Registry> registry)
      : registry_(std::move(registry)) {}

  void SetStatsSource(StatsSource source) {
    absl::MutexLock lock(&mu_);
    source_ = std::move(source);
  }

  void SetFleetSource(std::function<FleetMetricsSnapshot()> source) {
    absl::MutexLock lock(&mu_);
    fleet_source_ = std::move(source);
  }

  void SetReplicaSource(std::function<std::vector<ReplicaStats>()> source) {
    absl::MutexLock lock(&mu_);
    replica_source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    FlightCacheStats s;
    std::optional<FleetMetricsSnapshot> fleet;
    {
      absl::MutexLock lock(&mu_);
      if (!source_) return families;
      s = source_();
      if (fleet_source_) fleet = fleet_source_();
      if (replica_source_) AddReplicas(replica_source_(), families);
    }
    if (fleet.has_value()) AddFleet(s, *fleet, families);
    using prometheus::MetricType;
    const auto counter = MetricType::Counter;
    const auto gauge = MetricType::Gauge;
    families.push_back(Single("flightcache_cache_hits_total", "Gets served from the cache", counter,
                              static_cast<double>(s.hits)));
    families.push_back(Single("flightcache_cache_negative_hits_total",
                              "Gets answered NOT_FOUND from the negative cache", counter,
                              static_cast<double>(s.negative_hits)));
    families.push_back(Single("flightcache_cache_misses_total", "Gets that missed the cache",
                              counter, static_cast<double>(s.misses)));
    families.push_back(Single("flightcache_coalesced_total",
                              "Gets that joined a load already in flight", counter,
                              static_cast<double>(s.coalesced)));
    families.push_back(Single("flightcache_stale_served_total",
                              "Gets answered with a value past its TTL (stale-while-revalidate, "
                              "stale-if-error)",
                              counter, static_cast<double>(s.stale_served)));
    families.push_back(Single("flightcache_loads_started_total", "Loads started", counter,
                              static_cast<double>(s.loads_started)));
    families.push_back(Single("flightcache_refreshes_started_total",
                              "Background refreshes started (stale-while-revalidate, "
                              "refresh-ahead); also counted in loads_started",
                              counter, static_cast<double>(s.refreshes_started)));
    families.push_back(Single("flightcache_loads_total", "Finished loads by outcome", counter, 0));
    families.back().metric.clear();
    for (const auto& [outcome, value] : {std::pair{"succeeded", s.loads_succeeded},
                                         {"failed", s.loads_failed},
                                         {"cancelled", s.loads_cancelled}}) {
      prometheus::ClientMetric m;
      m.label = {{"outcome", outcome}};
      m.counter.value = static_cast<double>(value);
      families.back().metric.push_back(std::move(m));
    }
    families.push_back(Single("flightcache_origin_fetches_total",
                              "Origin fetches sent, hedges included", counter,
                              static_cast<double>(s.origin_fetches)));
    families.push_back(Single("flightcache_hedges_total", "Hedge fetches by outcome", counter, 0));
    families.back().metric.clear();
    for (const auto& [outcome, value] :
         {std::pair{"won", s.hedges_won}, {"lost", s.hedges_sent - s.hedges_won}}) {
      prometheus::ClientMetric m;
      m.label = {{"outcome", outcome}};
      m.counter.value = static_cast<double>(value);
      families.back().metric.push_back(std::move(m));
    }
    families.push_back(Single("flightcache_loads_too_late_to_fetch_total",
                              "Queued loads failed without a fetch: too little of their timeout "
                              "was left for a typical fetch",
                              counter, static_cast<double>(s.loads_too_late_to_fetch)));
    families.push_back(Single("flightcache_fetches_cut_by_load_timeout_total",
                              "Loads whose origin fetch was still running when the load timed out",
                              counter, static_cast<double>(s.fetches_cut_by_load_timeout)));
    families.push_back(Single("flightcache_loads_inflight", "Loads started and not finished", gauge,
                              static_cast<double>(s.loads_inflight)));
    families.push_back(Single("flightcache_loads_queued", "Loads waiting for a concurrency permit",
                              gauge, static_cast<double>(s.loads_queued)));
    families.push_back(Single("flightcache_loads_queue_capacity",
                              "Loads that may wait for a concurrency permit at most "
                              "(--max-queued-loads); a load beyond fails RESOURCE_EXHAUSTED",
                              gauge, static_cast<double>(s.loads_queue_capacity)));
    families.push_back(Single("flightcache_load_queue_lifo_handoffs_total",
                              "Concurrency permits given to the newest queued load, because the "
                              "oldest had waited longer than --load-queue-lifo-after",
                              counter, static_cast<double>(s.load_queue_lifo_handoffs)));
    families.push_back(Single("flightcache_load_concurrency_limit",
                              "Origin fetches allowed in flight now (--max-concurrent-loads, or "
                              "the adaptive limit's current value)",
                              gauge, static_cast<double>(s.load_concurrency_limit)));
    families.push_back(Single("flightcache_cache_entries", "Entries in the cache", gauge,
                              static_cast<double>(s.entries)));
    families.push_back(Single("flightcache_cache_bytes",
                              "Bytes the cache accounts for (keys, values, overhead)", gauge,
                              static_cast<double>(s.bytes)));
    families.push_back(Single("flightcache_cache_evictions_total", "Entries evicted to make room",
                              counter, static_cast<double>(s.evictions)));
    // The process collector's usual name: what a container memory limit is compared with, and
    // what the cache's own bytes are only part of (gRPC's calls, glibc's arenas).
    if (const int64_t rss = ResidentBytes(); rss >= 0) {
      families.push_back(Single("process_resident_memory_bytes", "Resident memory size in bytes",
                                gauge, static_cast<double>(rss)));
    }
    return families;
  }

 private:
  static void AddReplicas(const std::vector<ReplicaStats>& replicas,
                          std::vector<prometheus::MetricFamily>& families) {
    using prometheus::MetricType;
    struct Series {
      const char* name;
      const char* help;
      MetricType type;
      double (*value)(const ReplicaStats&);
    };
    const Series kSeries[] = {
        {"flightcache_origin_replica_fetches_total", "Origin fetches sent to each replica",
         MetricType::Counter, [](const ReplicaStats& r) { return static_cast<double>(r.fetches); }},
        {"flightcache_origin_replica_failures_total",
         "Fetches of each replica that failed (not OK, NOT_FOUND or cancelled by us)",
         MetricType::Counter,
         [](const ReplicaStats& r) { return static_cast<double>(r.failures); }},
        {"flightcache_origin_replica_ejections_total",
         "Times each replica was left out after consecutive failures", MetricType::Counter,
         [](const ReplicaStats& r) { return static_cast<double>(r.ejections); }},
        {"flightcache_origin_replica_ejected", "1 while the replica is left out", MetricType::Gauge,
         [](const ReplicaStats& r) { return r.ejected ? 1.0 : 0.0; }},
        {"flightcache_origin_replica_outstanding", "Fetches in flight to each replica",
         MetricType::Gauge,
         [](const ReplicaStats& r) { return static_cast<double>(r.outstanding); }},
    };
    for (const Series& series : kSeries) {
      families.push_back(Single(series.name, series.help, series.type, 0));
      families.back().metric.clear();
      for (const ReplicaStats& r : replicas) {
        prometheus::ClientMetric m;
        m.label = {{"replica", r.name}};
        (series.type == MetricType::Counter ? m.counter.value : m.gauge.value) = series.value(r);
        families.back().metric.push_back(std::move(m));
      }
    }
  }

  static void AddFleet(const FlightCacheStats& s, const FleetMetricsSnapshot& f,
                       std::vector<prometheus::MetricFamily>& families) {
    using prometheus::MetricType;
    const auto counter = MetricType::Counter;
    families.push_back(Single("flightcache_fleet_connected",
                              "1 when the fleet tier's Redis connection is up, by connection",
                              MetricType::Gauge, 0));
    families.back().metric.clear();
    for (const auto& [connection, up] :
         {std::pair{"commands", f.commands_connected}, {"subscriber", f.subscriber_connected}}) {
      prometheus::ClientMetric m;
      m.label = {{"connection", connection}};
      m.gauge.value = up ? 1 : 0;
      families.back().metric.push_back(std::move(m));
    }
    const std::pair<const char*, const char*> kHelp[] = {
        {"flightcache_fleet_hits_total", "Loads answered from the fleet tier"},
        {"flightcache_fleet_leases_won_total", "Loads this sidecar fetched for the fleet"},
        {"flightcache_fleet_lease_waits_total", "Loads that waited for another sidecar's fetch"},
        {"flightcache_fleet_takeovers_total", "Leases taken over after their holder stopped"},
        {"flightcache_fleet_fallbacks_total",
         "Loads that went to the origin alone because the fleet tier failed or could not wake"},
        {"flightcache_fleet_errors_total", "Fleet tier calls that failed"},
        {"flightcache_fleet_invalidations_received_total",
         "Invalidations announced by other sidecars"},
        {"flightcache_fleet_invalidations_sent_total", "Keys invalidated in the fleet tier"},
        {"flightcache_fleet_announcements_malformed_total",
         "Announcements dropped because they could not be decoded"},
        {"flightcache_fleet_resubscriptions_total",
         "Times the announcement subscription was lost and regained (the local cache is dropped)"},
    };
    const double values[] = {static_cast<double>(s.fleet_hits),
                             static_cast<double>(s.fleet_leases_won),
                             static_cast<double>(s.fleet_lease_waits),
                             static_cast<double>(s.fleet_takeovers),
                             static_cast<double>(s.fleet_fallbacks),
                             static_cast<double>(s.fleet_errors),
                             static_cast<double>(s.fleet_invalidations_received),
                             static_cast<double>(f.invalidations_sent),
                             static_cast<double>(f.announcements_malformed),
                             static_cast<double>(f.resubscriptions)};
    for (size_t i = 0; i < std::size(kHelp); ++i) {
      families.push_back(Single(kHelp[i].first, kHelp[i].second, counter, values[i]));
    }
  }

  const std::shared_ptr<prometheus::Registry> registry_;
  mutable absl::Mutex mu_;
  StatsSource source_ ABSL_GUARDED_BY(mu_);
  std::function<FleetMetricsSnapshot()> fleet_source_ ABSL_GUARDED_BY(mu_);
  std::function<std::vector<ReplicaStats>()> replica_source_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      collectable_(std::make_shared<Collector>(registry_)),
      requests_(prometheus::BuildCounter()
                    .Name("flightcache_requests_total")
                    .Help("Cache service RPCs by method and gRPC status code")
                    .Register(*registry_)),
      batch_keys_(prometheus::BuildCounter()
                      .Name("flightcache_batch_keys_total")
                      .Help("BatchGet keys by the status code a Get of the key would return")
                      .Register(*registry_)),
      fetch_duration_(prometheus::BuildHistogram()
                          .Name("flightcache_origin_fetch_duration_seconds")
                          .Help("Origin fetch latency by attempt (primary, hedge) and result")
                          .Register(*registry_)),
      origin_garbage_replies_(
          prometheus::BuildCounter()
              .Name("flightcache_origin_garbage_replies_total")
              .Help("Origin replies that were garbage (not a FetchResponse, or ttl_ms < 0)")
              .Register(*registry_)
              .Add({})),
      unread_requests_(prometheus::BuildCounter()
                           .Name("flightcache_requests_unread_total")
                           .Help("Calls whose client left (cancelled, deadline passed) before "
                                 "their request arrived; they never reached the cache")
                           .Register(*registry_)),
      timer_lateness_(prometheus::BuildHistogram()
                          .Name("flightcache_timer_lateness_seconds")
                          .Help("How late the timer thread ran each timer (caller deadlines, load "
                                "timeouts, hedges, cancelled-fetch grace) after its due time")
                          .Register(*registry_)
                          .Add({}, TimerBuckets())),
      timer_callback_(prometheus::BuildHistogram()
                          .Name("flightcache_timer_callback_seconds")
                          .Help("How long each timer callback held the one timer thread; every "
                                "later timer waits for it")
                          .Register(*registry_)
                          .Add({}, TimerBuckets())),
      redis_call_duration_(prometheus::BuildHistogram()
                               .Name("flightcache_fleet_redis_call_duration_seconds")
                               .Help("Fleet tier Redis commands by result (ok: any reply; error: "
                                     "timeout, connection down or an error reply)")
                               .Register(*registry_)),
      redis_call_ok_(redis_call_duration_.Add({{"result", "ok"}}, TimerBuckets())),
      redis_call_error_(redis_call_duration_.Add({{"result", "error"}}, TimerBuckets())),
      replica_fetch_duration_(prometheus::BuildHistogram()
                                  .Name("flightcache_origin_replica_fetch_duration_seconds")
                                  .Help("Origin fetch latency by replica (every result)")
                                  .Register(*registry_)) {}

Metrics::~Metrics() = default;

prometheus::Counter& Metrics::RequestCounter(RpcMethod method, grpc::StatusCode code) {
  const int index = static_cast<int>(method) * kCodeCount + CodeIndex(code);
  return *LoadOrCreate<prometheus::Counter>(request_series_[index], [&] {
    return &requests_.Add({{"method", MethodName(method)}, {"code", GrpcCodeName(code)}});
  });
}

void Metrics::RecordRequest(RpcMethod method, grpc::StatusCode code) {
  RequestCounter(method, code).Increment();
}

void Metrics::RecordBatchKey(grpc::StatusCode code) {
  LoadOrCreate<prometheus::Counter>(batch_key_series_[CodeIndex(code)], [&] {
    return &batch_keys_.Add({{"code", GrpcCodeName(code)}});
  })->Increment();
}

void Metrics::RecordOriginGarbageReply() { origin_garbage_replies_.Increment(); }

void Metrics::RecordUnreadRequest(RpcMethod method) {
  // Rare (a client that gave up before its request arrived): the family's own lock is enough.
  unread_requests_.Add({{"method", MethodName(method)}}).Increment();
}

void Metrics::SetReplicaSource(std::function<std::vector<ReplicaStats>()> source) {
  collectable_->SetReplicaSource(std::move(source));
}

void Metrics::SetReplicaNames(const std::vector<std::string>& names) {
  absl::MutexLock lock(&replica_mu_);
  absl::flat_hash_map<std::string, prometheus::Histogram*> kept;
  for (const std::string& name : names) {
    if (auto it = replica_series_.find(name); it != replica_series_.end()) {
      kept.insert(*it);
      replica_series_.erase(it);
    } else if (!kept.contains(name)) {
      kept[name] = &replica_fetch_duration_.Add({{"replica", name}}, FetchBuckets());
    }
  }
  for (const auto& [name, gone] : replica_series_) replica_fetch_duration_.Remove(gone);
  replica_series_ = std::move(kept);
}

void Metrics::RecordReplicaFetch(const std::string& replica, absl::Duration latency) {
  absl::MutexLock lock(&replica_mu_);
  if (auto it = replica_series_.find(replica); it != replica_series_.end()) {
    it->second->Observe(absl::ToDoubleSeconds(latency));
  }
}

void Metrics::OnFetchDone(uint32_t attempt, absl::Duration latency, const absl::Status& status) {
  const int attempt_index = attempt >= 2 ? 1 : 0;
  int result_index = 2;
  const char* result = "error";
  if (status.ok()) {
    result_index = 0;
    result = "ok";
  } else if (absl::IsNotFound(status)) {
    result_index = 1;
    result = "not_found";
  } else if (absl::IsCancelled(status)) {
    result_index = 3;
    result = "cancelled";
  }
  prometheus::Histogram* series =
      LoadOrCreate<prometheus::Histogram>(fetch_series_[attempt_index * 4 + result_index], [&] {
        return &fetch_duration_.Add(
            {{"attempt", attempt_index == 0 ? "primary" : "hedge"}, {"result", result}},
            FetchBuckets());
      });
  series->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::OnTimerFired(const TimerFiring& firing) {
  timer_lateness_.Observe(absl::ToDoubleSeconds(firing.lateness));
  timer_callback_.Observe(absl::ToDoubleSeconds(firing.callback_duration));
}

void Metrics::SetStatsSource(StatsSource source) {
  collectable_->SetStatsSource(std::move(source));
}

void Metrics::SetFleetSource(std::function<FleetMetricsSnapshot()> source) {
  collectable_->SetFleetSource(std::move(source));
}

void Metrics::RecordRedisCall(bool ok, absl::Duration latency) {
  (ok ? redis_call_ok_ : redis_call_error_).Observe(absl::ToDoubleSeconds(latency));
}

std::shared_ptr<prometheus::Collectable> Metrics::collectable() const { return collectable_; }

std::string Metrics::ExpositionText() const {
  return prometheus::TextSerializer().Serialize(collectable_->Collect());
}

}  // namespace flightcache
