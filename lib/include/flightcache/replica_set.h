// ReplicaSet: an Origin made of several replicas of one backend (--origin=grpc://A,B,...).
//
// Each fetch goes to the healthy replica with the fewest fetches outstanding from this sidecar
// (least outstanding requests; ties go round robin), so a slow replica, which holds its fetches
// longer, gets fewer new ones. A hedge (attempt 2) never goes to the replica its key's primary
// went to while another replica is healthy: hedging exists to escape a slow replica, and a hedge
// to the same one shares its trouble (Envoy's hedging avoids the previous host for that reason).
//
// Outlier ejection, in the manner of Envoy's: a replica whose `eject_after` consecutive fetches
// failed (any status but OK, NOT_FOUND and CANCELLED — a cancellation is ours, not the
// replica's) is left out for `base_ejection`, doubled on each repeat up to `max_ejection`; the
// repeat count starts over once the replica has gone `max_ejection` without an ejection. The last
// healthy replica is never ejected: a degraded backend is better than none.
//
// Membership can change while fetches run (grpc://dns:///NAME:PORT re-resolving, SetMembers()): a
// replica that stays keeps its counters and ejection state; one that leaves is dropped from new
// picks and freed when its last fetch in flight ends. With no replica at all, fetches fail with
// UNAVAILABLE at once.
//
// Thread-safety: thread-safe; one mutex guards the membership, the replicas' counters and the
// primaries' map, held only to pick a replica and to record a fetch's end (never across a
// replica's Fetch, a `done` or the making of a new replica's Origin).
// Lifetime: the clock must outlive this object; so must every fetch's `done`, and this object must
// outlive every fetch it started.
//
// Usage:
//   std::vector<std::unique_ptr<Origin>> replicas = ...;  // one GrpcOrigin per address
//   ReplicaSet origin(std::move(replicas), MonotonicClock::Get(), {.eject_after = 5});
//   origin.Fetch({.key = "k", .attempt = 1}, stop, done);
#ifndef FLIGHTCACHE_REPLICA_SET_H_
#define FLIGHTCACHE_REPLICA_SET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "flightcache/origin.h"

namespace flightcache {

struct ReplicaSetOptions {
  // Consecutive failed fetches that eject a replica; 0 never ejects.
  int64_t eject_after = 5;
  absl::Duration base_ejection = absl::Seconds(10);
  absl::Duration max_ejection = absl::Minutes(5);
  // Off only to measure what it buys: then a hedge goes to its primary's own replica (what one
  // address behind a connection-level balancer gives).
  bool hedge_to_other_replica = true;

  absl::Status Validate() const;
};

// One replica's counters since start.
struct ReplicaStats {
  std::string name;  // its Describe()
  int64_t fetches = 0;
  int64_t failures = 0;  // fetches that counted towards ejection
  int64_t ejections = 0;
  int64_t outstanding = 0;  // gauge
  bool ejected = false;     // gauge: left out now
};

class ReplicaSet final : public Origin {
 public:
  // Called once per finished fetch, with the replica's name (its Describe()), without the lock
  // (for metrics).
  using FetchObserver = absl::AnyInvocable<void(const std::string& replica, absl::Duration latency,
                                                const absl::Status& status)>;
  // Makes the Origin of a new member from its key (SetMembers()).
  using OriginMaker = absl::FunctionRef<std::unique_ptr<Origin>(const std::string& key)>;

  // `replicas` may be empty (a dns:/// set before its first resolution).
  // REQUIRES: options.Validate().ok().
  ReplicaSet(std::vector<std::unique_ptr<Origin>> replicas, const Clock& clock,
             ReplicaSetOptions options, FetchObserver observer = nullptr);
  ~ReplicaSet() override;
  ReplicaSet(const ReplicaSet&) = delete;
  ReplicaSet& operator=(const ReplicaSet&) = delete;

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override;
  // The replicas' descriptions joined by commas.
  std::string Describe() const override;

  // Makes the members exactly `keys` (duplicates count once): members with a key listed stay as
  // they are, a new key gets its Origin from `make`, and members not listed leave (see above). A
  // member's key is the name it was made from here (an address), or its Describe() for the
  // replicas given to the constructor; stats and the observer name it by its Describe().
  void SetMembers(const std::vector<std::string>& keys, OriginMaker make);

  size_t size() const;
  std::vector<ReplicaStats> stats() const;  // in membership order

 private:
  struct Replica {
    std::unique_ptr<Origin> origin;
    std::string key;   // what SetMembers() knows it by
    std::string name;  // origin->Describe()
    int64_t fetches = 0;
    int64_t failures = 0;
    int64_t consecutive_failures = 0;
    int64_t ejections = 0;
    int64_t outstanding = 0;
    int repeat = 0;  // ejections in a row without a quiet max_ejection between them
    absl::Time ejected_until = absl::InfinitePast();
  };

  static std::shared_ptr<Replica> MakeReplica(std::string key, std::unique_ptr<Origin> origin);
  // The replica for `request`; null when there is none. Counts the fetch as outstanding.
  std::shared_ptr<Replica> Pick(const FetchRequest& request, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool Healthy(const Replica& r, absl::Time now) { return r.ejected_until <= now; }
  size_t HealthyCount(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Replica& replica, const FetchRequest& request, const absl::Status& status,
              absl::Time started);

  const Clock& clock_;
  const ReplicaSetOptions options_;
  FetchObserver observer_;
  mutable absl::Mutex mu_;
  // Shared with the fetches in flight, so a replica that leaves lives until its last one ends.
  std::vector<std::shared_ptr<Replica>> replicas_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;  // round-robin start among equals
  // Where each key's primary fetch in flight went, so its hedge can go elsewhere. The pointer is
  // only compared, and its entry is erased when that fetch ends (while the fetch keeps it alive).
  absl::flat_hash_map<std::string, const Replica*> primary_of_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_REPLICA_SET_H_
