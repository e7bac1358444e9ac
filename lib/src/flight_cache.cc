#include "flightcache/flight_cache.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/flight.h"
#include "flightcache/option_checks.h"
#include "internal/fleet_loader.h"
#include "internal/origin_fetcher.h"
#include "internal/single_flight.h"
#include "internal/striped.h"

namespace flightcache {
namespace {

// What one load produces: a value and its TTL. NOT_FOUND from the origin travels as the status;
// NOT_FOUND from the fleet as a null value with the TTL the fleet has left for it.
struct LoadedValue {
  Value value;
  absl::Duration ttl;
  bool from_fleet = false;
};

bool IsAnswer(const absl::Status& status) { return status.ok() || absl::IsNotFound(status); }

// A load failure that stale-if-error covers: the origin's or this sidecar's trouble (UNAVAILABLE,
// the load timeout, a full queue, garbage, a value over the limit), not an answer and not the
// caller's own cancellation.
bool IsFailureToCoverWithStale(const absl::Status& status) {
  return !IsAnswer(status) && !absl::IsCancelled(status);
}

// A load's result as one of its waiters gets it.
GetResult FromLoad(const SharedResult<LoadedValue>& result, JoinOutcome outcome) {
  GetResult r;
  switch (outcome) {
    case JoinOutcome::kStarted:
      r.source = result->ok() && (*result)->from_fleet ? Source::kFleet : Source::kLoaded;
      break;
    case JoinOutcome::kJoined:
      r.source = Source::kCoalesced;
      break;
    case JoinOutcome::kAnsweredByRecheck:
      r.source = Source::kHit;
      break;
  }
  if (result->ok() && (*result)->value == nullptr) {
    r.status = absl::NotFoundError("key not found (cached in the fleet)");
    r.ttl_remaining = (*result)->ttl;
  } else if (result->ok()) {
    r.value = (*result)->value;
    r.ttl_remaining = (*result)->ttl;
  } else {
    r.status = result->status();
  }
  return r;
}

// Where a waiter whose load failed looks for a stale value of its key (stale-if-error).
class StaleIfError {
 public:
  virtual ~StaleIfError() = default;
  // A value of `key` the store still holds within the stale-if-error window, if any.
  virtual std::optional<GetResult> Stale(const std::string& key) = 0;
};

// A Get waiting for a load: kept by value in the flight's subscriber table, so a waiter costs no
// allocation of its own. What every waiter of a flight shares (the key, the cache) is not
// copied into it: the key comes from the flight, the cache through one pointer.
struct CacheWaiter {
  void operator()(const SharedResult<LoadedValue>& result, JoinOutcome outcome,
                  const std::string& key) {
    if (stale_if_error != nullptr && IsFailureToCoverWithStale(result->status())) {
      if (std::optional<GetResult> stale = stale_if_error->Stale(key)) {
        done(*std::move(stale));
        return;
      }
    }
    done(FromLoad(result, outcome));
  }

  StaleIfError* stale_if_error;  // null: stale-if-error is off
  FlightCache::Callback done;
};

using Group = SingleFlightGroup<LoadedValue, CacheWaiter>;

// The store keeps values past their TTL for the longer of the two stale windows.
CacheOptions StoreOptions(const FlightCacheOptions& options) {
  CacheOptions store = options.store;
  store.keep_expired_for =
      std::max({store.keep_expired_for, options.stale_while_revalidate, options.stale_if_error});
  return store;
}

// Origin errors reach callers as UNAVAILABLE naming the origin's error (see the spec's status
// table); NOT_FOUND, INTERNAL (our own bug or garbage from the origin) and RESOURCE_EXHAUSTED (the
// value is too large, per the Origin contract) keep their codes. CANCELLED becomes UNAVAILABLE
// too: a load that *we* cancelled has already been completed (with CANCELLED) by the group before
// its origin call was stopped, so a CANCELLED that still reaches waiters is the origin's failure.
absl::Status MapOriginError(const absl::Status& status, const std::string& origin) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return absl::NotFoundError(
          absl::StrCat("key not found at origin ", origin, ": ", status.message()));
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kResourceExhausted:
      return status;
    default:
      return absl::UnavailableError(
          absl::StrCat("origin ", origin, " failed: ", absl::StatusCodeToString(status.code()),
                       ": ", status.message()));
  }
}

// Upper bounds of the options: far above any sensible setting, low enough that no deadline or
// expiry computed from them can overflow (and a typo such as 3000000h is caught).
constexpr absl::Duration kMaxTtl = absl::Hours(8760);  // a year
constexpr absl::Duration kMaxLoadTimeout = absl::Hours(24);
constexpr int64_t kMaxConcurrentLoads = 1'000'000;
constexpr int64_t kMaxQueuedLoads = 100'000'000;
constexpr absl::Duration kMaxLeaseTtl = absl::Hours(1);

}  // namespace

absl::Status FleetOptions::Validate() const {
  if (absl::Status s = CheckPositiveDuration("lease_ttl", lease_ttl, kMaxLeaseTtl); !s.ok()) {
    return s;
  }
  return CheckRange("max_value_bytes", max_value_bytes, 1, static_cast<int64_t>(Value::kMaxBytes));
}

absl::Status FlightCacheOptions::Validate() const {
  if (absl::Status s = PrefixOptionError("store.", store.Validate()); !s.ok()) return s;
  if (absl::Status s = CheckPositiveDuration("default_ttl", default_ttl, kMaxTtl); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckNonNegativeDuration("negative_ttl", negative_ttl, kMaxTtl); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositiveDuration("load_timeout", load_timeout, kMaxLoadTimeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckRange("max_concurrent_loads", max_concurrent_loads, 1, kMaxConcurrentLoads);
      !s.ok()) {
    return s;
  }
  if (adaptive_concurrency) {
    if (absl::Status s =
            PrefixOptionError("adaptive_concurrency.", adaptive_concurrency->Validate());
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = CheckRange("max_queued_loads", max_queued_loads, 0, kMaxQueuedLoads);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckNonNegativeDuration("load_queue_lifo_after", load_queue_lifo_after, kMaxLoadTimeout);
      !s.ok()) {
    return s;
  }
  const int64_t max_bytes = static_cast<int64_t>(Value::kMaxBytes);
  if (absl::Status s = CheckRange("max_key_bytes", max_key_bytes, 1, max_bytes); !s.ok()) return s;
  if (absl::Status s = CheckRange("max_value_bytes", max_value_bytes, 1, max_bytes); !s.ok()) {
    return s;
  }
  if (absl::Status s = PrefixOptionError("hedge.", hedge.Validate()); !s.ok()) return s;
  if (absl::Status s = PrefixOptionError("fleet.", fleet.Validate()); !s.ok()) return s;
  if (absl::Status s =
          CheckNonNegativeDuration("stale_while_revalidate", stale_while_revalidate, kMaxTtl);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckNonNegativeDuration("stale_if_error", stale_if_error, kMaxTtl);
      !s.ok()) {
    return s;
  }
  if (!(refresh_ahead >= 0 && refresh_ahead < 1)) {
    return OptionError(
        "refresh_ahead",
        absl::StrCat("must be 0 (off) or a fraction in (0, 1), got ", refresh_ahead));
  }
  return absl::OkStatus();
}

struct FlightCache::Impl final : FleetListener, StaleIfError {
  Impl(const FlightCacheOptions& options, Origin& origin, TimerQueue& timers,
       LoadObserver* observer, const Clock& ttl_clock, FleetStore* fleet_store,
       WorkerPool* wake_workers)
      : options(options),
        origin_name(origin.Describe()),
        load_timeout_message(absl::StrCat("origin ", origin_name,
                                          " timed out: no answer within load_timeout=",
                                          absl::FormatDuration(options.load_timeout))),
        cache(StoreOptions(options), ttl_clock),
        group({.abandon = options.abandoned_loads,
               .load_timeout = options.load_timeout,
               .timeout_message = load_timeout_message,
               .wake_workers = wake_workers},
              timers,
              {.recheck = [this](std::string_view key) -> SharedResult<LoadedValue> {
                 std::optional<CacheHit> hit = cache.Lookup(key);
                 return hit.has_value() ? HitAsResult(*hit) : nullptr;
               },
               .store = [this](const std::string& key,
                               const absl::StatusOr<LoadedValue>& r) { Store(key, r); },
               .completed =
                   [this](const std::string& key, const absl::StatusOr<LoadedValue>& r) {
                     CountCompletion(r.status());
                   }}),
        fleet(fleet_store),
        fetcher(origin, timers,
                {.max_concurrent = options.max_concurrent_loads,
                 .max_queued = options.max_queued_loads,
                 .adaptive = options.adaptive_concurrency,
                 .lifo_after = options.load_queue_lifo_after},
                options.hedge, FetchObserver(observer)) {
    if (fleet == nullptr) return;
    loader = std::make_shared<FleetLoader>(
        FleetLoader::Options{.lease_ttl = options.fleet.lease_ttl,
                             .max_value_bytes = options.fleet.max_value_bytes},
        *fleet, timers);
    fleet->SetListener(this);
  }

  // Stops announcements and the fleet protocol (waiting for the store's callbacks in progress),
  // then cancels every load (detached ones too, and waits for load timeouts running now);
  // `fetcher`, destroyed first, then waits until none of its callbacks can reach this object any
  // more.
  ~Impl() override {
    if (fleet != nullptr) {
      fleet->SetListener(nullptr);
      loader->Shutdown();
    }
    group.CancelAll();
  }

  static OriginFetcher::CallObserver FetchObserver(LoadObserver* observer) {
    if (observer == nullptr) return nullptr;
    return [observer](uint32_t attempt, absl::Duration latency, const absl::Status& status) {
      observer->OnFetchDone(attempt, latency, status);
    };
  }

  // Runs under the group's shard lock for the key: only answers are cached, failures never. An
  // answer always replaces what was there, so no stale value outlives a newer answer.
  void Store(const std::string& key, const absl::StatusOr<LoadedValue>& result) {
    if (result.ok()) {
      // A NOT_FOUND from the fleet is a null value; a fleet entry may have no TTL left.
      if (result->ttl > absl::ZeroDuration()) {
        cache.Insert(key, result->value, result->ttl, RefreshAfter(*result));
      } else {
        cache.Erase(key);
      }
    } else if (absl::IsNotFound(result.status())) {
      if (options.negative_ttl > absl::ZeroDuration()) {
        cache.Insert(key, nullptr, options.negative_ttl);
      } else {
        cache.Erase(key);
      }
    }
  }

  // When a hit on this value starts a refresh-ahead: never for not-found entries.
  absl::Duration RefreshAfter(const LoadedValue& loaded) const {
    if (options.refresh_ahead <= 0 || loaded.value == nullptr) return absl::InfiniteDuration();
    return loaded.ttl * options.refresh_ahead;
  }

  // Starts a background refresh of `key` unless a load of it is in flight: an ordinary flight
  // that no caller waits for.
  void Refresh(std::string_view key) {
    if (group.StartBackground(key,
                              [this](LoadHandle<LoadedValue>&& load) { Load(std::move(load)); })) {
      refreshes_started.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // A value the store still holds (fresh, or past its TTL by less than `window`) as a Get's
  // answer, for a caller that would otherwise wait or fail. Nothing for a not-found entry.
  std::optional<GetResult> Retained(const std::optional<CacheHit>& hit, absl::Duration window) {
    if (!hit.has_value() || hit->negative() || hit->stale_for() >= window) return std::nullopt;
    if (!hit->stale()) {
      return GetResult{
          .value = hit->value, .source = Source::kHit, .ttl_remaining = hit->ttl_remaining};
    }
    stale_served.fetch_add(1, std::memory_order_relaxed);
    return GetResult{.value = hit->value, .source = Source::kStale, .stale_for = hit->stale_for()};
  }

  std::optional<GetResult> Stale(const std::string& key) override {
    return Retained(cache.LookupAllowingStale(key), options.stale_if_error);
  }

  void CountCompletion(const absl::Status& status) {
    if (IsAnswer(status)) {
      loads_succeeded.fetch_add(1, std::memory_order_relaxed);
    } else if (absl::IsCancelled(status)) {
      loads_cancelled.fetch_add(1, std::memory_order_relaxed);
    } else {
      loads_failed.fetch_add(1, std::memory_order_relaxed);
    }
  }

  using SharedLoad = std::shared_ptr<LoadHandle<LoadedValue>>;

  // The loader every flight runs: through the fleet protocol if there is a fleet, else (and
  // whenever the protocol says so) the origin fetch.
  void Load(LoadHandle<LoadedValue>&& handle) {
    auto load = std::make_shared<LoadHandle<LoadedValue>>(std::move(handle));
    if (loader != nullptr) {
      loader->Start(std::make_unique<CacheFleetLoad>(*this, std::move(load)));
    } else {
      Fetch(load, nullptr);
    }
  }

  // The origin fetch under a permit, within the load's timeout. Answers the load, then (a fleet
  // lease holder's fetch) tells `publish` what the fleet should learn: local callers never wait
  // for the fleet.
  void Fetch(const SharedLoad& load, absl::AnyInvocable<void(FleetPublication) &&> publish) {
    std::stop_token stop = load->stop_token();
    fetcher.Fetch(load->key(), load->deadline(), stop,
                  [this, load, stop, publish = std::move(publish)](FetchOutcome outcome) mutable {
                    absl::StatusOr<LoadedValue> result;
                    switch (outcome.end) {
                      case FetchOutcome::End::kNotSent:
                        result = outcome.result.status();
                        break;
                      case FetchOutcome::End::kCutByDeadline:
                        // Whichever fired first, our timer or the origin client's deadline,
                        // callers see the one load-timeout error.
                        result = absl::UnavailableError(load_timeout_message);
                        break;
                      case FetchOutcome::End::kAnswered:
                        result = ToLoadedValue(std::move(outcome.result));
                        break;
                    }
                    if (!publish) {
                      load->Complete(std::move(result));
                      return;
                    }
                    FleetPublication publication = ToPublication(outcome.end, result, stop);
                    load->Complete(std::move(result));
                    std::move(publish)(std::move(publication));
                  });
  }

  // What a lease holder's fetch tells the fleet. A fetch that never reached the origin (local
  // queue full, too late, cancelled here) is not shared: others load for themselves rather than
  // fail with this sidecar's trouble.
  FleetPublication ToPublication(FetchOutcome::End end, const absl::StatusOr<LoadedValue>& result,
                                 const std::stop_token& stop) const {
    using Kind = FleetAnnouncement::Kind;
    if (end == FetchOutcome::End::kCutByDeadline) {
      return {.kind = Kind::kFailed, .failure = result.status()};
    }
    if (end == FetchOutcome::End::kNotSent || stop.stop_requested()) return {};
    if (result.ok()) {
      return {.kind = Kind::kLoaded,
              .entry = FleetEntry{.value = std::string(result->value.view()),
                                  .ttl_remaining = result->ttl}};
    }
    if (absl::IsNotFound(result.status()) && options.negative_ttl > absl::ZeroDuration()) {
      return {.kind = Kind::kLoaded,
              .entry = FleetEntry{.not_found = true, .ttl_remaining = options.negative_ttl}};
    }
    return {.kind = Kind::kFailed, .failure = result.status()};
  }

  // A fleet entry as a load's result.
  absl::StatusOr<LoadedValue> FromFleet(const FleetEntry& entry) const {
    if (entry.not_found) return LoadedValue{nullptr, entry.ttl_remaining, /*from_fleet=*/true};
    if (static_cast<int64_t>(entry.value.size()) > options.max_value_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("fleet value of ", entry.value.size(),
                       " bytes exceeds max_value_bytes=", options.max_value_bytes));
    }
    return LoadedValue{MakeValue(entry.value), entry.ttl_remaining, /*from_fleet=*/true};
  }

  // One local flight as the fleet protocol sees it.
  class CacheFleetLoad final : public FleetLoad {
   public:
    CacheFleetLoad(Impl& impl, SharedLoad load)
        : impl_(impl), load_(std::move(load)), key_(load_->key()), stop_(load_->stop_token()) {}
    const std::string& key() const override { return key_; }
    std::stop_token stop_token() const override { return stop_; }
    void AnswerFromFleet(FleetEntry entry) override { load_->Complete(impl_.FromFleet(entry)); }
    void AnswerFailure(absl::Status status) override { load_->Complete(std::move(status)); }
    void FetchFromOrigin(absl::AnyInvocable<void(FleetPublication) &&> then) override {
      impl_.Fetch(load_, std::move(then));
    }

   private:
    Impl& impl_;
    const SharedLoad load_;
    const std::string key_;  // the handle forgets its key once it has answered
    const std::stop_token stop_;
  };

  // FleetListener: another sidecar's announcement. An invalidation runs the local one (the
  // erase and the detach under the group's lock, as Invalidate() does); waiting loads wake.
  void OnAnnouncement(const FleetAnnouncement& announcement) override {
    if (announcement.kind == FleetAnnouncement::Kind::kInvalidated) {
      fleet_invalidations_received.fetch_add(1, std::memory_order_relaxed);
      group.Detach(announcement.key, [&] { cache.Erase(announcement.key); });
    }
    loader->OnAnnouncement(announcement);
  }

  // FleetListener: invalidations may have been missed, so nothing cached here can be trusted.
  void OnResubscribed() override {
    cache.Clear();
    loader->OnResubscribed();
  }

  absl::StatusOr<LoadedValue> ToLoadedValue(absl::StatusOr<FetchResult> result) const {
    if (!result.ok()) return MapOriginError(result.status(), origin_name);
    if (static_cast<int64_t>(result->value.size()) > options.max_value_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("origin value of ", result->value.size(),
                       " bytes exceeds max_value_bytes=", options.max_value_bytes));
    }
    const absl::Duration ttl =
        result->ttl > absl::ZeroDuration() ? result->ttl : options.default_ttl;
    return LoadedValue{MakeValue(std::move(result->value)), ttl};
  }

  GetResult FromCacheHit(const CacheHit& hit) {
    GetResult r;
    r.source = Source::kHit;
    r.ttl_remaining = hit.ttl_remaining;
    if (hit.negative()) {
      requests.Add(kNegativeHits);
      r.status = absl::NotFoundError("key not found (cached)");
    } else {
      requests.Add(kHits);
      r.value = hit.value;
    }
    return r;
  }

  // A hit found by the group's recheck, counted, in the shape a load's waiters get (see Get()).
  SharedResult<LoadedValue> HitAsResult(const CacheHit& hit) {
    if (hit.negative()) {
      requests.Add(kNegativeHits);
      return MakeSharedResult<LoadedValue>(absl::NotFoundError("key not found (cached)"));
    }
    requests.Add(kHits);
    return MakeSharedResult<LoadedValue>(LoadedValue{hit.value, hit.ttl_remaining});
  }

  const FlightCacheOptions& options;
  const std::string origin_name;
  const std::string load_timeout_message;  // UNAVAILABLE text of a load that timed out
  ShardedCache cache;
  // Statistics only, never used to order other memory. The per-request ones are striped so that
  // hits on different cores do not share a written cache line.
  enum RequestCounter { kRequests, kHits, kNegativeHits, kMisses, kCoalesced, kCounterCount };
  StripedCounters<kCounterCount> requests;
  std::atomic<int64_t> loads_succeeded{0}, loads_failed{0}, loads_cancelled{0};
  std::atomic<int64_t> fleet_invalidations_received{0};
  std::atomic<int64_t> stale_served{0}, refreshes_started{0};
  Group group;
  FleetStore* const fleet;              // null: no fleet tier
  std::shared_ptr<FleetLoader> loader;  // set iff `fleet` is
  // Last: destroyed first, waiting for its callbacks while everything they use is still here.
  OriginFetcher fetcher;
};

FlightCache::FlightCache(FlightCacheOptions options, Origin& origin, TimerQueue& timers,
                         LoadObserver* observer, const Clock* ttl_clock, FleetStore* fleet,
                         WorkerPool* wake_workers)
    : options_(options),
      impl_(std::make_unique<Impl>(options_, origin, timers, observer,
                                   ttl_clock != nullptr ? *ttl_clock : timers.clock(), fleet,
                                   wake_workers)) {}

FlightCache::~FlightCache() = default;

GetHandle FlightCache::Get(std::string_view key, Callback done) {
  Impl& impl = *impl_;
  impl.requests.Add(Impl::kRequests);
  if (key.empty()) {
    done(GetResult{.status = absl::InvalidArgumentError("key must not be empty")});
    return {};
  }
  if (static_cast<int64_t>(key.size()) > options_.max_key_bytes) {
    done(GetResult{.status = absl::InvalidArgumentError(
                       absl::StrCat("key is ", key.size(), " bytes; the limit (max_key_bytes) is ",
                                    options_.max_key_bytes))});
    return {};
  }
  // One probe and one count per lookup: a hit here, or — under the key's group lock, where no
  // load can store it unseen — the group's recheck, which counts the hit it finds. With
  // stale-while-revalidate the probe also finds a stale value, served while a refresh runs.
  // Refreshes start before `done` runs: `key` may point into the caller's request.
  const absl::Duration swr = options_.stale_while_revalidate;
  std::optional<CacheHit> hit =
      swr > absl::ZeroDuration() ? impl.cache.LookupAllowingStale(key) : impl.cache.Lookup(key);
  if (hit.has_value() && !hit->stale()) {
    if (hit->refresh_due) impl.Refresh(key);
    done(impl.FromCacheHit(*hit));
    return {};
  }
  if (std::optional<GetResult> stale = impl.Retained(hit, swr)) {
    impl.requests.Add(Impl::kMisses);  // a miss of the fresh cache, answered from the stale value
    impl.Refresh(key);
    done(*std::move(stale));
    return {};
  }
  // With stale-if-error, a waiter whose load fails looks for a stale value of its key.
  CacheWaiter waiter{
      .stale_if_error = options_.stale_if_error > absl::ZeroDuration() ? &impl : nullptr,
      .done = std::move(done)};
  Group::Joined joined = impl.group.Join(
      key, [&impl](LoadHandle<LoadedValue>&& load) { impl.Load(std::move(load)); },
      std::move(waiter));
  switch (joined.outcome) {
    case Group::Outcome::kJoined:
      impl.requests.Add(Impl::kMisses);
      impl.requests.Add(Impl::kCoalesced);
      return GetHandle(std::move(joined.waiter));
    case Group::Outcome::kStarted:
      impl.requests.Add(Impl::kMisses);
      return GetHandle(std::move(joined.waiter));
    case Group::Outcome::kAnsweredByRecheck:
      // A load stored the key between our miss and Join's lock: a hit after all (a value or a
      // cached not-found, never a failure for stale-if-error). Join moves from `waiter` only
      // when it subscribes it, which it did not.
      // NOLINTNEXTLINE(bugprone-use-after-move)
      waiter.done(FromLoad(joined.answer, Group::Outcome::kAnsweredByRecheck));
      return {};
  }
  return {};
}

bool FlightCache::ReadHit(std::string_view key,
                          absl::FunctionRef<void(const CacheEntryView&)> read) {
  Impl& impl = *impl_;
  if (key.empty() || static_cast<int64_t>(key.size()) > options_.max_key_bytes) return false;
  bool negative = false;
  bool refresh_due = false;
  if (!impl.cache.Read(key, [&](const CacheEntryView& entry) {
        negative = entry.negative;
        refresh_due = entry.refresh_due;
        read(entry);
      })) {
    return false;
  }
  impl.requests.Add(Impl::kRequests);
  impl.requests.Add(negative ? Impl::kNegativeHits : Impl::kHits);
  if (refresh_due) impl.Refresh(key);
  return true;
}

int64_t FlightCache::Invalidate(absl::Span<const std::string> keys) {
  int64_t removed = 0;
  for (const std::string& key : keys) {
    impl_->group.Detach(key, [&] { removed += impl_->cache.Erase(key) ? 1 : 0; });
  }
  if (impl_->loader != nullptr) {
    impl_->loader->Invalidate(std::vector<std::string>(keys.begin(), keys.end()));
  }
  return removed;
}

FlightCacheStats FlightCache::stats() const {
  const Impl& impl = *impl_;
  FlightCacheStats s;
  auto load = [](const std::atomic<int64_t>& v) { return v.load(std::memory_order_relaxed); };
  s.requests = impl.requests.Sum(Impl::kRequests);
  s.hits = impl.requests.Sum(Impl::kHits);
  s.negative_hits = impl.requests.Sum(Impl::kNegativeHits);
  s.misses = impl.requests.Sum(Impl::kMisses);
  s.coalesced = impl.requests.Sum(Impl::kCoalesced);
  const SingleFlightStats flights = impl.group.stats();
  s.loads_started = flights.started;
  s.loads_inflight = flights.inflight;
  s.loads_succeeded = load(impl.loads_succeeded);
  s.loads_failed = load(impl.loads_failed);
  s.loads_cancelled = load(impl.loads_cancelled);
  const OriginFetcherStats fetches = impl.fetcher.stats();
  s.loads_too_late_to_fetch = fetches.too_late;
  s.fetches_cut_by_load_timeout = fetches.cut_by_deadline;
  s.load_concurrency_limit = fetches.concurrency_limit;
  s.origin_fetches = fetches.fetches;
  s.hedges_sent = fetches.hedges_sent;
  s.hedges_won = fetches.hedges_won;
  s.loads_queued = fetches.queued;
  s.loads_queue_capacity = options_.max_queued_loads;
  s.load_queue_lifo_handoffs = fetches.lifo_handoffs;
  const CacheStats cache = impl.cache.stats();
  s.entries = cache.entries;
  s.bytes = cache.bytes;
  s.evictions = cache.evictions;
  s.stale_served = load(impl.stale_served);
  s.refreshes_started = load(impl.refreshes_started);
  if (impl.loader != nullptr) {
    const FleetLoaderStats fleet = impl.loader->stats();
    s.fleet_hits = fleet.hits;
    s.fleet_leases_won = fleet.leases_won;
    s.fleet_lease_waits = fleet.lease_waits;
    s.fleet_errors = fleet.errors;
    s.fleet_takeovers = fleet.takeovers;
    s.fleet_fallbacks = fleet.fallbacks;
    s.fleet_loads_waiting = static_cast<int64_t>(impl.loader->waiting());
    s.fleet_invalidations_received = load(impl.fleet_invalidations_received);
  }
  return s;
}

}  // namespace flightcache
