#include "flightcache/replica_set.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "flightcache/option_checks.h"

namespace flightcache {
namespace {

constexpr size_t kNone = ~size_t{0};
constexpr int64_t kMaxEjectAfter = 1'000'000;
constexpr absl::Duration kMaxEjection = absl::Hours(24);

// A failure that counts towards ejection: the replica's trouble. NOT_FOUND is an answer, and a
// CANCELLED fetch is one we stopped (a lost hedge race, a caller gone).
bool IsReplicaFailure(const absl::Status& status) {
  return !status.ok() && !absl::IsNotFound(status) && !absl::IsCancelled(status);
}

}  // namespace

absl::Status ReplicaSetOptions::Validate() const {
  if (absl::Status s = CheckRange("eject_after", eject_after, 0, kMaxEjectAfter); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositiveDuration("base_ejection", base_ejection, kMaxEjection);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositiveDuration("max_ejection", max_ejection, kMaxEjection); !s.ok()) {
    return s;
  }
  if (max_ejection < base_ejection) {
    return OptionError("max_ejection", "must not be shorter than base_ejection");
  }
  return absl::OkStatus();
}

ReplicaSet::ReplicaSet(std::vector<std::unique_ptr<Origin>> replicas, const Clock& clock,
                       ReplicaSetOptions options, FetchObserver observer)
    : clock_(clock), options_(options), observer_(std::move(observer)) {
  absl::MutexLock lock(&mu_);
  replicas_.reserve(replicas.size());
  for (std::unique_ptr<Origin>& origin : replicas) {
    std::string key = origin->Describe();
    replicas_.push_back(MakeReplica(std::move(key), std::move(origin)));
  }
}

// A fetch's callback holds its replica, and an origin holds its fetches' callbacks: a fetch that
// never ended (a fake origin never asked to answer) would keep its replica, and so its origin,
// alive in a cycle. The origins go first, outside the lock, and take the callbacks with them.
ReplicaSet::~ReplicaSet() {
  std::vector<std::unique_ptr<Origin>> origins;
  {
    absl::MutexLock lock(&mu_);
    for (const std::shared_ptr<Replica>& r : replicas_) origins.push_back(std::move(r->origin));
    replicas_.clear();
  }
  origins.clear();
}

std::shared_ptr<ReplicaSet::Replica> ReplicaSet::MakeReplica(std::string key,
                                                             std::unique_ptr<Origin> origin) {
  auto r = std::make_shared<Replica>();
  r->key = std::move(key);
  r->name = origin->Describe();
  r->origin = std::move(origin);
  return r;
}

std::string ReplicaSet::Describe() const {
  absl::MutexLock lock(&mu_);
  if (replicas_.empty()) return "no replica";
  return absl::StrJoin(replicas_, ",", [](std::string* out, const std::shared_ptr<Replica>& r) {
    out->append(r->name);
  });
}

size_t ReplicaSet::size() const {
  absl::MutexLock lock(&mu_);
  return replicas_.size();
}

void ReplicaSet::SetMembers(const std::vector<std::string>& keys, OriginMaker make) {
  const auto keyed = [](const std::string& key) {
    return [&key](const std::shared_ptr<Replica>& r) { return r->key == key; };
  };
  std::vector<std::string> missing;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : keys) {
      if (!absl::c_any_of(replicas_, keyed(key)) && !absl::c_linear_search(missing, key)) {
        missing.push_back(key);
      }
    }
  }
  // Outside the lock: making an Origin (a channel) is not a pick's business to wait for.
  std::vector<std::shared_ptr<Replica>> made;
  made.reserve(missing.size());
  for (const std::string& key : missing) made.push_back(MakeReplica(key, make(key)));
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Replica>> members;
  members.reserve(keys.size());
  for (const std::string& key : keys) {
    if (absl::c_any_of(members, keyed(key))) continue;  // a duplicate
    if (auto it = absl::c_find_if(replicas_, keyed(key)); it != replicas_.end()) {
      members.push_back(*it);
    } else if (auto m = absl::c_find_if(made, keyed(key)); m != made.end()) {
      members.push_back(*m);
    }
  }
  replicas_ = std::move(members);
  next_ = 0;
}

size_t ReplicaSet::HealthyCount(absl::Time now) const {
  return static_cast<size_t>(absl::c_count_if(
      replicas_, [&](const std::shared_ptr<Replica>& r) { return Healthy(*r, now); }));
}

std::shared_ptr<ReplicaSet::Replica> ReplicaSet::Pick(const FetchRequest& request, absl::Time now) {
  const size_t n = replicas_.size();
  if (n == 0) return nullptr;
  const Replica* primary = nullptr;
  if (request.attempt > 1) {
    if (auto it = primary_of_.find(request.key); it != primary_of_.end()) primary = it->second;
  }
  size_t avoid = kNone;
  for (size_t j = 0; primary != nullptr && j < n; ++j) {
    if (replicas_[j].get() == primary) avoid = j;
  }
  const auto chosen = [&](size_t j) {
    Replica& r = *replicas_[j];
    ++r.fetches;
    ++r.outstanding;
    if (request.attempt == 1) primary_of_[request.key] = &r;
    return replicas_[j];
  };
  if (!options_.hedge_to_other_replica && avoid != kNone && Healthy(*replicas_[avoid], now)) {
    return chosen(avoid);
  }
  const size_t start = next_ % n;
  next_ = (start + 1) % n;
  // The healthy replica with the fewest outstanding fetches, other than the primary's; the scan
  // starts one further each time, so equals take turns.
  size_t best = kNone;
  for (size_t i = 0; i < n; ++i) {
    const size_t j = (start + i) % n;
    if (j == avoid || !Healthy(*replicas_[j], now)) continue;
    if (best == kNone || replicas_[j]->outstanding < replicas_[best]->outstanding) best = j;
  }
  if (best != kNone) return chosen(best);
  // Only the primary's replica is healthy (or, briefly, none is): it is still better than none.
  if (avoid != kNone && Healthy(*replicas_[avoid], now)) return chosen(avoid);
  best = start;
  for (size_t j = 0; j < n; ++j) {
    if (replicas_[j]->ejected_until < replicas_[best]->ejected_until) best = j;
  }
  return chosen(best);
}

void ReplicaSet::Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) {
  const absl::Time started = clock_.Now();
  std::shared_ptr<Replica> replica;
  {
    absl::MutexLock lock(&mu_);
    replica = Pick(request, started);
  }
  if (replica == nullptr) {
    done(absl::UnavailableError("no origin replica is known yet (none resolved)"));
    return;
  }
  Origin& origin = *replica->origin;
  auto on_done = [this, replica, request, started,
                  done = std::move(done)](absl::StatusOr<FetchResult> result) mutable {
    Finish(*replica, request, result.status(), started);
    done(std::move(result));
  };
  try {
    origin.Fetch(request, std::move(cancel), std::move(on_done));
  } catch (...) {
    // The Origin contract forbids throwing; if one does, the fetch is lost but not its count.
    Finish(*replica, request, absl::InternalError("replica threw"), started);
    throw;
  }
}

void ReplicaSet::Finish(Replica& r, const FetchRequest& request, const absl::Status& status,
                        absl::Time started) {
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    --r.outstanding;
    if (request.attempt == 1) {
      if (auto it = primary_of_.find(request.key); it != primary_of_.end() && it->second == &r) {
        primary_of_.erase(it);
      }
    }
    if (IsReplicaFailure(status)) {
      ++r.failures;
      ++r.consecutive_failures;
      if (options_.eject_after > 0 && r.consecutive_failures >= options_.eject_after &&
          Healthy(r, now) && HealthyCount(now) > 1) {
        // Back for a whole max_ejection since its last ejection ended: a first offence again.
        if (now - r.ejected_until >= options_.max_ejection) r.repeat = 0;
        const absl::Duration length = std::min(
            options_.base_ejection * (int64_t{1} << std::min(r.repeat, 30)), options_.max_ejection);
        r.ejected_until = now + length;
        ++r.repeat;
        ++r.ejections;
        r.consecutive_failures = 0;
      }
    } else if (!absl::IsCancelled(status)) {
      r.consecutive_failures = 0;
    }
  }
  if (observer_) observer_(r.name, now - started, status);
}

std::vector<ReplicaStats> ReplicaSet::stats() const {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  std::vector<ReplicaStats> out;
  out.reserve(replicas_.size());
  for (const std::shared_ptr<Replica>& r : replicas_) {
    out.push_back({.name = r->name,
                   .fetches = r->fetches,
                   .failures = r->failures,
                   .ejections = r->ejections,
                   .outstanding = r->outstanding,
                   .ejected = !Healthy(*r, now)});
  }
  return out;
}

}  // namespace flightcache
