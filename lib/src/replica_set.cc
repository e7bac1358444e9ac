#include "flightcache/replica_set.h"

#include <algorithm>
#include <exception>
#include <utility>

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
  replicas_.reserve(replicas.size());
  for (std::unique_ptr<Origin>& origin : replicas) {
    Replica r;
    r.name = origin->Describe();
    r.origin = std::move(origin);
    replicas_.push_back(std::move(r));
  }
}

std::string ReplicaSet::Describe() const {
  return absl::StrJoin(replicas_, ",",
                       [](std::string* out, const Replica& r) { out->append(r.name); });
}

size_t ReplicaSet::HealthyCount(absl::Time now) const {
  return static_cast<size_t>(std::count_if(replicas_.begin(), replicas_.end(),
                                           [&](const Replica& r) { return Healthy(r, now); }));
}

size_t ReplicaSet::Pick(const FetchRequest& request, absl::Time now) {
  size_t avoid = kNone;
  if (request.attempt > 1) {
    if (auto it = primary_of_.find(request.key); it != primary_of_.end()) avoid = it->second;
    if (!options_.hedge_to_other_replica && avoid != kNone && Healthy(replicas_[avoid], now)) {
      return avoid;
    }
  }
  const size_t n = replicas_.size();
  const size_t start = next_;
  next_ = (next_ + 1) % n;
  // The healthy replica with the fewest outstanding fetches, other than the primary's; the scan
  // starts one further each time, so equals take turns.
  size_t best = kNone;
  for (size_t i = 0; i < n; ++i) {
    const size_t j = (start + i) % n;
    if (j == avoid || !Healthy(replicas_[j], now)) continue;
    if (best == kNone || replicas_[j].outstanding < replicas_[best].outstanding) best = j;
  }
  if (best != kNone) return best;
  // Only the primary's replica is healthy (or, briefly, none is): it is still better than none.
  if (avoid != kNone && Healthy(replicas_[avoid], now)) return avoid;
  best = start;
  for (size_t j = 0; j < n; ++j) {
    if (replicas_[j].ejected_until < replicas_[best].ejected_until) best = j;
  }
  return best;
}

void ReplicaSet::Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) {
  const absl::Time started = clock_.Now();
  size_t index;
  {
    absl::MutexLock lock(&mu_);
    index = Pick(request, started);
    Replica& r = replicas_[index];
    ++r.fetches;
    ++r.outstanding;
    if (request.attempt == 1) primary_of_[request.key] = index;
  }
  auto on_done = [this, index, request, started,
                  done = std::move(done)](absl::StatusOr<FetchResult> result) mutable {
    Finish(index, request, result.status(), started);
    done(std::move(result));
  };
  try {
    replicas_[index].origin->Fetch(request, std::move(cancel), std::move(on_done));
  } catch (...) {
    // The Origin contract forbids throwing; if one does, the fetch is lost but not its count.
    Finish(index, request, absl::InternalError("replica threw"), started);
    throw;
  }
}

void ReplicaSet::Finish(size_t index, const FetchRequest& request, const absl::Status& status,
                        absl::Time started) {
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    Replica& r = replicas_[index];
    --r.outstanding;
    if (request.attempt == 1) {
      if (auto it = primary_of_.find(request.key); it != primary_of_.end() && it->second == index) {
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
  if (observer_) observer_(index, now - started, status);
}

std::vector<ReplicaStats> ReplicaSet::stats() const {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  std::vector<ReplicaStats> out;
  out.reserve(replicas_.size());
  for (const Replica& r : replicas_) {
    out.push_back({.name = r.name,
                   .fetches = r.fetches,
                   .failures = r.failures,
                   .ejections = r.ejections,
                   .outstanding = r.outstanding,
                   .ejected = !Healthy(r, now)});
  }
  return out;
}

}  // namespace flightcache
