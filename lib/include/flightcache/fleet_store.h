// FleetStore: the fleet tier as the core sees it — a store shared by every sidecar of a fleet
// (Redis, in server/fleet/), with per-key leases and announcements to every sidecar.
//
// The core (FlightCache) uses it so that the sidecars of a fleet act as one cache
// (docs/PROTOCOL.md, "Beyond one pod"): a local flight first Reads the key; on a miss it takes the
// key's lease; the holder fetches from the origin and Publishes the result, which stores it and
// announces it; the others wait for the announcement, then Read. Invalidate deletes the value and
// voids the lease everywhere. The protocol itself (waiting, take-over, renewal, falling back to the
// origin) lives in the core; a FleetStore only does the store's operations, each bounded in time.
//
// Errors: every operation ends with OK or an error, within the store's own timeout (Redis:
// --fleet-timeout). Any error means "go on alone": the core falls back to the origin, so no Get
// fails because of the fleet.
//
// Thread-safety: every method may be called from any thread. Callbacks may run inline or on any
// thread, but never on a thread that must stay responsive for the store's own I/O (the Redis
// implementation runs them on worker threads), because a callback may complete a flight and wake
// all of its waiters. Callbacks must not block.
// Lifetime: the store outlives the FlightCache that uses it; SetListener(nullptr) before the
// listener goes away, after which no listener call is running or will start.
#ifndef FLIGHTCACHE_FLEET_STORE_H_
#define FLIGHTCACHE_FLEET_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flightcache {

// What the fleet holds for one key: a value, or a cached NOT_FOUND, and how long it has left.
struct FleetEntry {
  bool not_found = false;
  std::string value;  // empty when not_found
  absl::Duration ttl_remaining = absl::ZeroDuration();
};

// What a lease holder tells every sidecar, and what Invalidate tells them.
struct FleetAnnouncement {
  enum class Kind {
    kLoaded,  // the key's entry is in the store now: Read it
    // Not stored: the value is larger than --fleet-max-value-bytes, or the holder's load ended
    // without reaching the origin (cancelled, its own queue full): load it yourself.
    kNotShared,
    kFailed,  // the load failed with `failure`; nothing was stored
    kInvalidated,
  };
  Kind kind = Kind::kLoaded;
  std::string key;
  absl::Status failure;  // kFailed only
};

// Receives announcements from other sidecars (never this sidecar's own).
class FleetListener {
 public:
  virtual ~FleetListener() = default;
  virtual void OnAnnouncement(const FleetAnnouncement& announcement) = 0;
  // The store lost its subscription and has it again: announcements may have been missed (the
  // core drops its local cache and wakes its waiting loads).
  virtual void OnResubscribed() = 0;
};

class FleetStore {
 public:
  template <typename T>
  using Callback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;
  using DoneCallback = absl::AnyInvocable<void(absl::Status) &&>;

  virtual ~FleetStore() = default;

  // Where announcements go; null stops them (see Lifetime).
  virtual void SetListener(FleetListener* listener) = 0;

  // Whether announcements reach this sidecar now (subscribed). A load that would have to wait for
  // one fetches from the origin instead when they do not.
  virtual bool CanWait() const = 0;

  // The key's entry, or nullopt if the fleet does not hold it.
  virtual void Read(const std::string& key, Callback<std::optional<FleetEntry>> done) = 0;

  // Takes the key's lease as `token` for `ttl` if nobody holds it and the key's entry is not in
  // the store: true if taken; false if held, or if the entry is there (a holder published between
  // the caller's Read and this call: the caller then waits, and its Read after registering finds
  // the entry).
  virtual void TakeLease(const std::string& key, const std::string& token, absl::Duration ttl,
                         Callback<bool> done) = 0;

  // Extends the lease to `ttl` from now if it is still `token`'s: false if it is not any more.
  virtual void RenewLease(const std::string& key, const std::string& token, absl::Duration ttl,
                          Callback<bool> done) = 0;

  // Atomically, if the key's lease is still `token`'s: stores `entry` (when set) for its
  // ttl_remaining, ends the lease and announces `announcement`; true. Otherwise (the lease was
  // voided by Invalidate, or expired and was taken over) does nothing: false.
  virtual void Publish(const std::string& key, const std::string& token,
                       std::optional<FleetEntry> entry, FleetAnnouncement announcement,
                       Callback<bool> done) = 0;

  // Deletes the keys' entries and leases and announces kInvalidated for each.
  virtual void Invalidate(std::vector<std::string> keys, DoneCallback done) = 0;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_FLEET_STORE_H_
