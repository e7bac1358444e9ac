// FleetLoader: the fleet protocol of one sidecar — how a local load becomes at most one origin
// fetch across the fleet (docs/PROTOCOL.md, "Beyond one pod").
//
// For each local flight FlightCache hands it (a FleetLoad), the loader:
//   1. Reads the key from the fleet: a hit answers the flight (fleet_hits).
//   2. On a miss takes the key's lease under a fresh random token. The holder fetches from the
//      origin through the flight's own fetch (the OriginFetcher, as a local load), renews the
//      lease every lease_ttl/3 while it runs, and once the flight is answered locally Publishes
//      what the fleet should learn (a value, NOT_FOUND, a failure, or "not shared").
//   3. If the lease is held elsewhere, registers the flight as a waiter for the key, then Reads
//      once more (an announcement may have come before the registration), and waits for an
//      announcement: kLoaded → Read; kNotShared → fetch alone; kFailed → that failure;
//      kInvalidated (or a resubscription) → start over at 1. A timer at lease_ttl after the wait
//      began takes the lease over if the holder stopped renewing it (died).
//   Any store error, or a store that cannot deliver announcements now (CanWait() false) when the
//   flight would wait, makes the flight fetch from the origin alone: the fleet is an optimisation,
//   never a dependency.
//
// Every transition of a flight is decided under the loader's mutex and acted on after it is
// released: the loader never calls into the FleetStore or answers a flight while holding it, so
// store callbacks may run inline. A flight's epoch (bumped at each new phase) makes callbacks of a
// phase that is over do nothing. When the flight's stop token fires (every caller left, load
// timeout, shutdown) its waiter registration and timers go at once.
//
// Thread-safety: thread-safe. Store callbacks, announcements, timers and stop callbacks may run
// on any thread.
// Lifetime: create with std::make_shared. `store` and `timers` must outlive it. The owner calls
// Shutdown() (after the store stopped calling the listener) before anything a FleetLoad uses goes
// away: Shutdown() waits for every store callback and timer running the protocol; afterwards no
// store operation starts, timers do nothing and a finished origin fetch publishes nothing (as if
// the sidecar died: the fleet takes its leases over when they expire).
//
// Usage:
//   auto loader = std::make_shared<FleetLoader>(options, store, timers);
//   loader->Start(std::make_unique<MyLoad>(std::move(handle)));   // for each local flight
//   loader->OnAnnouncement(a);                                      // from the FleetListener
//   loader->Shutdown();
#ifndef FLIGHTCACHE_INTERNAL_FLEET_LOADER_H_
#define FLIGHTCACHE_INTERNAL_FLEET_LOADER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/fleet_store.h"
#include "flightcache/timer_queue.h"

namespace flightcache {

// What a lease holder's origin fetch gives the fleet.
struct FleetPublication {
  FleetAnnouncement::Kind kind = FleetAnnouncement::Kind::kNotShared;
  std::optional<FleetEntry> entry;  // kLoaded: stored with its ttl_remaining
  absl::Status failure;             // kFailed: what every waiter gets
};

// One local flight as the loader drives it (FlightCache's LoadHandle behind it). Each Answer*
// may be called after the flight was answered otherwise (timed out, cancelled): then it does
// nothing. Called without the loader's lock held.
class FleetLoad {
 public:
  virtual ~FleetLoad() = default;
  virtual const std::string& key() const = 0;
  // Fires when the flight no longer needs an answer (every caller left, timeout, shutdown).
  virtual std::stop_token stop_token() const = 0;
  // Answers the flight with the fleet's entry (a value or NOT_FOUND) and its remaining TTL.
  virtual void AnswerFromFleet(FleetEntry entry) = 0;
  // Answers the flight with another sidecar's failed load, or with CANCELLED at shutdown.
  virtual void AnswerFailure(absl::Status status) = 0;
  // Fetches from the origin as a local load does, answers the flight, then (unless null) calls
  // `then` with what the fleet should learn. `then` runs once, on any thread.
  virtual void FetchFromOrigin(absl::AnyInvocable<void(FleetPublication) &&> then) = 0;
};

struct FleetLoaderStats {
  int64_t hits = 0;         // flights answered from the fleet by a Read
  int64_t leases_won = 0;   // leases taken (take-overs included)
  int64_t lease_waits = 0;  // flights that waited for another sidecar's load
  int64_t errors = 0;       // store operations that failed
  int64_t takeovers = 0;    // leases taken over after they expired
  int64_t fallbacks = 0;    // flights that fetched from the origin alone (error, cannot wait)
};

class FleetLoader final : public std::enable_shared_from_this<FleetLoader> {
 public:
  struct Options {
    absl::Duration lease_ttl = absl::Seconds(2);
    int64_t max_value_bytes = int64_t{1} << 20;  // larger values are not shared
  };

  FleetLoader(Options options, FleetStore& store, TimerQueue& timers);
  ~FleetLoader();
  FleetLoader(const FleetLoader&) = delete;
  FleetLoader& operator=(const FleetLoader&) = delete;

  // Runs the protocol for one local flight. After Shutdown(), answers it CANCELLED.
  void Start(std::unique_ptr<FleetLoad> load);

  // From the FleetListener: wakes the flights waiting for the announcement's key. (The owner runs
  // its own local invalidation for kInvalidated.)
  void OnAnnouncement(const FleetAnnouncement& announcement);
  // From the FleetListener: every waiting flight starts over (announcements may have been lost).
  void OnResubscribed();

  // Fire and forget: FleetStore::Invalidate, its error counted.
  void Invalidate(std::vector<std::string> keys);

  // See Lifetime. Idempotent.
  void Shutdown();

  FleetLoaderStats stats() const;
  // Flights registered as waiting for an announcement now.
  size_t waiting() const;

 private:
  struct Flight;
  using FlightPtr = std::shared_ptr<Flight>;
  enum class Phase { kReading, kTakingLease, kHolding, kFetchingAlone, kWaiting, kDone };

  // 128 random bits in hex.
  std::string NewTokenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Counts a protocol step in progress (a store operation, a timer callback) unless shut down.
  bool Enter();
  void Exit();

  // How a step that begins under mu_ goes on.
  enum class Step { kGo, kStale, kShutDown };
  // If `f` is still in the phase of `epoch`: moves it to `next` (nullopt: stays) and, if `counts`,
  // Enter()s for the store operation the step issues. At shutdown the flight is done instead.
  Step BeginLocked(Flight& f, uint64_t epoch, std::optional<Phase> next, bool counts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Moves `f` to `next` if it is still in the phase of `epoch`: leaves the waiting table, cancels
  // its timers, bumps its epoch. False (nothing changes) if it moved on already.
  bool Transition(Flight& f, uint64_t epoch, Phase next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unregister(Flight& f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The protocol's steps; each takes the epoch of the phase that decided it.
  void ReadFirst(const FlightPtr& f, uint64_t epoch);
  void OnFirstRead(const FlightPtr& f, uint64_t epoch,
                   absl::StatusOr<std::optional<FleetEntry>> read);
  void TakeLease(const FlightPtr& f, uint64_t epoch, bool takeover);
  void OnLeaseAnswer(const FlightPtr& f, uint64_t epoch, bool takeover, const std::string& token,
                     absl::StatusOr<bool> taken);
  // Becomes the lease holder and fetches; false if the flight moved on (the lease is not used).
  bool Hold(const FlightPtr& f, uint64_t epoch, bool takeover);
  void ReleaseLease(const std::string& key, const std::string& token);
  void OnHolderFetched(const FlightPtr& f, FleetPublication publication);
  void Renew(const std::weak_ptr<Flight>& weak);
  void OnRenewed(const std::weak_ptr<Flight>& weak, absl::StatusOr<bool> renewed);
  void Wait(const FlightPtr& f, uint64_t epoch);
  void ReadWhileWaiting(const FlightPtr& f, uint64_t epoch, bool miss_starts_over);
  void OnTakeoverTimer(const std::weak_ptr<Flight>& weak);
  void StartOver(const FlightPtr& f, uint64_t epoch);
  void AnswerHit(const FlightPtr& f, uint64_t epoch, FleetEntry entry);
  void AnswerFailure(const FlightPtr& f, uint64_t epoch, absl::Status failure);
  // Fetches from the origin without the lease; `fallback`: because of the store, not kNotShared.
  void FetchAlone(const FlightPtr& f, uint64_t epoch, bool fallback);
  void CountError(const absl::Status& status);
  void OnStopped(const FlightPtr& f);
  TimerId ArmTakeover(const FlightPtr& f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TimerId ArmRenewal(const FlightPtr& f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  FleetStore& store_;
  TimerQueue& timers_;

  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  int64_t active_ ABSL_GUARDED_BY(mu_) = 0;  // protocol steps in progress (see Enter())
  absl::flat_hash_map<std::string, std::vector<FlightPtr>> waiting_ ABSL_GUARDED_BY(mu_);
  absl::BitGen random_ ABSL_GUARDED_BY(mu_);

  // Statistics only, never used to order other memory.
  std::atomic<int64_t> hits_{0}, leases_won_{0}, lease_waits_{0}, errors_{0}, takeovers_{0},
      fallbacks_{0};
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_INTERNAL_FLEET_LOADER_H_
