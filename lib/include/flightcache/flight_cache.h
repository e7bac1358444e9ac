// FlightCache: the request-coalescing cache — the one object the server talks to.
//
// Get(key) serves a hit from the ShardedCache. On a miss it joins the key's in-flight load or
// starts one (SingleFlightGroup); the load's OriginFetcher waits for a concurrency permit, then
// fetches from the Origin through the Hedger, under its own `load_timeout` — never under any
// caller's deadline. When the last waiter of a load leaves, the load is cancelled
// (AbandonPolicy::kCancel) or runs on to fill the cache (kFinish). A load that gets its permit with
// less of its timeout left than a typical fetch takes (the median of recent answered fetches) fails
// UNAVAILABLE without fetching: under overload, starting it would only make the origin do work that
// is cancelled half way while the loads behind it wait. Invalidate() removes entries and detaches
// loads in flight so their results are not stored and later Gets start new loads.
//
// Serving stale (all off by default): with `stale_while_revalidate`, a Get for a value past its
// TTL by less than that window is answered at once with the stale value (Source::kStale) while one
// background refresh runs; with `stale_if_error`, a Get whose load fails (anything but an answer
// or the caller's own cancellation) gets a value past its TTL by less than that window instead of
// the error; with `refresh_ahead` = F, a hit on a value older than F x its TTL starts a background
// refresh, so a key that keeps being read never expires. A background refresh is an ordinary
// flight (coalesced with misses, limited, hedged, under its own timeout) that no caller waits for
// and no caller's leaving cancels. Stale values are kept in the store (counted against its
// capacity, evicted first) for the longer of the two windows; Invalidate removes them, and a
// NOT_FOUND answer replaces them.
//
// With a FleetStore (the fleet tier), a load first asks the fleet, and at most one sidecar of the
// fleet fetches a key from the origin while the others wait for it (internal/fleet_loader.h);
// invalidations reach every sidecar. The fleet only ever saves origin fetches: when it fails, a
// load fetches from the origin alone.
//
// Non-blocking: Get() returns at once; `done` runs exactly once — inline for a hit or an error
// known at once, otherwise on the thread that completes the load (an origin or timer thread) or,
// for a load with more than 64 waiters, on a wake worker beside it. Cancelling the returned
// GetHandle makes `done` run with CANCELLED unless the load has already completed: once it has,
// `done` runs (or has run) with the load's result, if need be after Cancel() returned.
//
// Thread-safety: thread-safe. `done` must not block.
// Lifetime: FlightCache must outlive every handle and every pending `done` (and must not be
// destroyed from inside a `done`: a wake worker's would wait for itself); its destructor
// cancels every load still in flight (invalidated ones too), answering their waiters with
// CANCELLED, and waits until the origin has answered every cancelled fetch and no timer or origin
// callback can reach it any more (short: origins stop promptly once cancelled).
//
// Usage:
//   FlightCache cache(options, origin, timers);
//   GetHandle h = cache.Get("user:42", [](GetResult r) { Reply(r); });
//   ...
//   h.Cancel();  // the caller's deadline passed: `done` gets CANCELLED, the load goes on for
//   others
#ifndef FLIGHTCACHE_FLIGHT_CACHE_H_
#define FLIGHTCACHE_FLIGHT_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "flightcache/adaptive_limit.h"
#include "flightcache/cache_entry.h"
#include "flightcache/call_context.h"
#include "flightcache/fleet_store.h"
#include "flightcache/flight.h"
#include "flightcache/hedger.h"
#include "flightcache/origin.h"
#include "flightcache/sharded_cache.h"
#include "flightcache/timer_queue.h"
#include "flightcache/worker_pool.h"

namespace flightcache {

// The fleet tier (used when FlightCache is given a FleetStore).
struct FleetOptions {
  // How long a lease lasts unless renewed: a waiter takes the load over this long after the
  // holder stops renewing (dies). The holder renews every lease_ttl/3.
  absl::Duration lease_ttl = absl::Seconds(2);
  // Larger values are served but not stored in the fleet (waiters elsewhere fetch themselves).
  int64_t max_value_bytes = int64_t{1} << 20;

  absl::Status Validate() const;
};

struct FlightCacheOptions {
  CacheOptions store;  // the bounded in-memory store of values
  absl::Duration default_ttl = absl::Seconds(60);
  absl::Duration negative_ttl = absl::Seconds(5);
  absl::Duration load_timeout = absl::Seconds(5);
  AbandonPolicy abandoned_loads = AbandonPolicy::kCancel;
  int64_t max_concurrent_loads = 64;
  // Set: the concurrency limit is found from the origin's latency as it runs, within this range,
  // and max_concurrent_loads is unused.
  std::optional<AdaptiveLimitOptions> adaptive_concurrency;
  int64_t max_queued_loads = 10000;
  // Positive: while the oldest queued load has waited longer than this, a free fetch permit goes
  // to the newest queued load (adaptive LIFO, ConcurrencyLimiter). Zero: FIFO always.
  absl::Duration load_queue_lifo_after = absl::ZeroDuration();
  int64_t max_key_bytes = 4096;
  int64_t max_value_bytes = int64_t{4} << 20;
  HedgeOptions hedge;
  FleetOptions fleet;
  // Serving stale (see the file comment); zero turns each off.
  absl::Duration stale_while_revalidate = absl::ZeroDuration();
  absl::Duration stale_if_error = absl::ZeroDuration();
  double refresh_ahead = 0;  // 0, or a fraction of the TTL in (0, 1)

  absl::Status Validate() const;
};

// As on the wire. kFleet: this call's load was answered by the fleet (callers that joined that
// load see kCoalesced). kStale: a value past its TTL (GetResult::stale_for says by how much).
enum class Source {
  kUnspecified = 0,
  kHit = 1,
  kLoaded = 2,
  kCoalesced = 3,
  kStale = 4,
  kFleet = 5
};

struct GetResult {
  absl::Status status;  // OK, or the code a caller of Get sees (see the spec's status table)
  Value value;          // set when status is OK
  Source source = Source::kUnspecified;
  absl::Duration ttl_remaining = absl::ZeroDuration();  // zero for a stale value
  absl::Duration stale_for = absl::ZeroDuration();      // how long past its TTL (kStale only)
};

// The spec's Stats: counters since start plus current gauges.
struct FlightCacheStats {
  int64_t requests = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t coalesced = 0;
  int64_t loads_started = 0;
  int64_t loads_succeeded = 0;  // value or NOT_FOUND
  int64_t loads_failed = 0;
  int64_t loads_cancelled = 0;
  int64_t origin_fetches = 0;
  int64_t hedges_sent = 0;
  int64_t hedges_won = 0;
  int64_t loads_inflight = 0;
  int64_t loads_queued = 0;
  int64_t loads_queue_capacity = 0;      // max_queued_loads: loads_queued at most
  int64_t load_queue_lifo_handoffs = 0;  // permits given to the newest queued load (lifo_after)
  int64_t entries = 0;
  int64_t bytes = 0;
  int64_t evictions = 0;
  int64_t negative_hits = 0;
  // Serving stale: stale answers given (each one; each is also counted a miss), background
  // refreshes started (each is also counted in loads_started).
  int64_t stale_served = 0;
  int64_t refreshes_started = 0;
  // Origin work that could not help (metrics only, not in the wire Stats):
  // loads that left the queue without fetching because too little of their timeout was left for a
  // typical fetch to answer, and loads whose fetch was still running when their timeout passed.
  int64_t loads_too_late_to_fetch = 0;
  int64_t fetches_cut_by_load_timeout = 0;
  // Origin fetches allowed in flight now: max_concurrent_loads, or the adaptive limit's value.
  int64_t load_concurrency_limit = 0;
  // The fleet tier (all zero without a FleetStore): local loads answered from the fleet by a
  // Read, leases won (take-overs included), loads that waited for another sidecar's load, fleet
  // store operations that failed, invalidations received from other sidecars.
  int64_t fleet_hits = 0;
  int64_t fleet_leases_won = 0;
  int64_t fleet_lease_waits = 0;
  int64_t fleet_errors = 0;
  int64_t fleet_invalidations_received = 0;
  // Metrics only: leases taken over after they expired, and loads that fetched from the origin
  // alone because of the fleet store (an error, or announcements not reaching us).
  int64_t fleet_takeovers = 0;
  int64_t fleet_fallbacks = 0;
  // Gauge: local loads waiting now for another sidecar's load.
  int64_t fleet_loads_waiting = 0;
};

// Observes loads, for metrics and logs. Called without locks held; must be cheap and thread-safe.
class LoadObserver {
 public:
  virtual ~LoadObserver() = default;
  // One origin fetch finished (any attempt), with its latency and status.
  virtual void OnFetchDone(uint32_t attempt, absl::Duration latency, const absl::Status& status) {}
};

// Cancels one Get's wait. Move-only; destroying it does NOT cancel (the caller decides).
class GetHandle final {
 public:
  GetHandle() = default;
  explicit GetHandle(FlightWaiter waiter) : waiter_(std::move(waiter)) {}
  GetHandle(GetHandle&&) = default;
  GetHandle& operator=(GetHandle&&) = default;

  // Idempotent. Safe to call after `done` ran (then it does nothing).
  void Cancel() { waiter_.Cancel(); }

 private:
  FlightWaiter waiter_;
};

class FlightCache final {
 public:
  using Callback = absl::AnyInvocable<void(GetResult)>;

  // REQUIRES: options.Validate().ok(). `origin`, `timers`, `observer` (may be null),
  // `ttl_clock` (may be null) and `fleet` (may be null) must outlive this object. Entry expiry and
  // `ttl_remaining` are read from `ttl_clock`, else from timers.clock(): a server passes
  // &CoarseClock::Get() to keep the clock read on the hit path cheap.
  // With a `fleet`, loads go through the fleet protocol (docs/PROTOCOL.md, "Beyond one pod"):
  // this object is the store's listener from construction until its destructor, which first
  // stops the listener and waits for the fleet operations in progress. Without one, the cache
  // behaves exactly as a single sidecar.
  // With `wake_workers` (may be null; must outlive this object), a load's waiters beyond the
  // first 64 are answered by those workers too, in batches, instead of all by the thread that
  // completed the load (see SingleFlightGroup's wake_workers).
  FlightCache(FlightCacheOptions options, Origin& origin, TimerQueue& timers,
              LoadObserver* observer = nullptr, const Clock* ttl_clock = nullptr,
              FleetStore* fleet = nullptr, WorkerPool* wake_workers = nullptr);
  ~FlightCache();
  FlightCache(const FlightCache&) = delete;
  FlightCache& operator=(const FlightCache&) = delete;

  GetHandle Get(std::string_view key, Callback done);

  // The hit path without sharing the value: if `key` is cached (value or not-found), calls
  // `read` with a view of the entry while the cache holds it for reading, counts the request as
  // a hit, and returns true; `read` copies what it needs (e.g. into a response) and must be short
  // and not call into this object. Otherwise returns false and counts nothing: the caller then
  // calls Get(), which handles misses, loads and bad keys. Cheaper than Get() for a hit: no
  // reference to the value is taken, so hits on one key from many cores write no shared line.
  bool ReadHit(std::string_view key, absl::FunctionRef<void(const CacheEntryView&)> read);

  // Removes the keys' entries and detaches their loads in flight. Returns entries removed (here).
  // With a fleet, also invalidates the keys in the fleet, without waiting (its errors are only
  // counted).
  int64_t Invalidate(absl::Span<const std::string> keys);

  FlightCacheStats stats() const;
  const FlightCacheOptions& options() const { return options_; }

 private:
  struct Impl;
  const FlightCacheOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_FLIGHT_CACHE_H_
