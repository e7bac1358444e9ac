// OriginModel: the one simulated origin, without any transport — what each fetch answers, how
// long it takes, and the counters tests and operators read. Two adapters drive it: the server's
// built-in origin `--origin=sim://?...` (sim::SimOrigin, sim_origin.h) and the demo program
// flightcache-origin (client/origin/origin_service.h, over gRPC). Given the same options and seed
// and the same fetches in the same order, both answer the same.
//
// For each fetch, BeginFetch() decides, in this order:
//   rejected   `reject_above` fetches already in flight (0: never): RESOURCE_EXHAUSTED at once;
//   not found  a fixed share `not_found_rate` of the *keys* (chosen by a stable hash of the key,
//              KeyIsMissing(), so a key that does not exist never does — as with a real backend)
//              answer NOT_FOUND;
//   error      each fetch fails with probability `error_rate` (UNAVAILABLE, a transient error);
//   value      otherwise.
// Latency is drawn from `latency`; above `overload_threshold` fetches in flight (0: never) it is
// multiplied by 1 + overload_slope·(in_flight − threshold)/threshold, modelling a backend that
// slows down in proportion to its overload. The caller waits that long (on a timer) and then
// calls EndFetch(), which gives the answer; a fetch the client cancelled ends with kCancelled or
// kDeadlineExceeded instead.
//
// Values: each answered value of a key bumps that key's version, and the value encodes key and
// version (EncodeSimValue) padded to `value_bytes`, so a test can check that it got the right key
// and whether the value was fetched again. With `version_slots` = 0 versions are kept per key
// exactly (a map that grows with the keys; the `keys` counter counts them). With N > 0 they live
// in N slots indexed by the key's hash, so memory stays bounded however many keys a load test
// touches: two keys that share a slot share a counter (each key's versions still strictly
// increase), and `keys` stays 0.
//
// Thread-safety: thread-safe (one mutex; BeginFetch and EndFetch are O(1) apart from encoding the
// value, which happens outside the lock).
//
// Usage:
//   OriginModel model(options);
//   FetchPlan plan = model.BeginFetch("user:1", /*attempt=*/1);
//   ... after plan.latency ...
//   absl::StatusOr<FetchResult> answer = model.EndFetch("user:1", plan, FetchEnd::kAnswered);
#ifndef FLIGHTCACHE_SIM_ORIGIN_MODEL_H_
#define FLIGHTCACHE_SIM_ORIGIN_MODEL_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/origin.h"
#include "flightcache/sim/latency_distribution.h"

namespace flightcache::sim {

struct OriginModelOptions {
  LatencyDistribution latency;  // default fixed:5ms
  int64_t value_bytes = 128;
  double error_rate = 0;
  double not_found_rate = 0;
  int64_t overload_threshold = 0;
  double overload_slope = 1.0;
  int64_t reject_above = 0;
  absl::Duration ttl = absl::ZeroDuration();  // sent with each value; 0: the server's default TTL
  std::optional<uint64_t> seed;               // none: a random seed
  int64_t version_slots = 0;                  // 0: exact per-key versions (see above)

  // Messages name each option as `spell` spells it (flightcache-origin: "--value-bytes");
  // without it, by its field name ("value_bytes").
  absl::Status Validate(absl::FunctionRef<std::string(absl::string_view)> spell) const;
  absl::Status Validate() const;
};

enum class FetchOutcome { kValue, kNotFound, kError, kRejected };
enum class FetchEnd { kAnswered, kCancelled, kDeadlineExceeded };

struct FetchPlan {
  FetchOutcome outcome = FetchOutcome::kValue;
  absl::Duration latency;
};

struct OriginCounters {
  int64_t fetches = 0;          // every fetch begun
  int64_t primary_fetches = 0;  // attempt 1 (or 0: unset)
  int64_t hedge_fetches = 0;    // attempt >= 2
  int64_t values = 0;           // answered with a value
  int64_t not_found = 0;
  int64_t errors = 0;
  int64_t rejected = 0;
  int64_t cancelled = 0;          // the caller cancelled before the answer (deadline included)
  int64_t deadline_exceeded = 0;  // of those, ended as kDeadlineExceeded
  int64_t inflight = 0;
  int64_t peak_inflight = 0;  // most fetches in flight at once
  int64_t keys = 0;           // distinct keys fetched (0 with version_slots > 0)
};

// What a simulated value says about itself.
struct SimValueInfo {
  std::string key;
  uint64_t version = 0;
};

// "sim-value v=<version> key=<key length>:<key>\n", then '.' up to `value_bytes` bytes (never
// truncated: a value_bytes smaller than the header gives just the header, so the key can always
// be read back).
std::string EncodeSimValue(absl::string_view key, uint64_t version, int64_t value_bytes);
// Reads back what EncodeSimValue wrote; nothing for a value it did not make.
std::optional<SimValueInfo> DecodeSimValue(absl::string_view value);

// Whether `key` is one of the keys that do not exist at `not_found_rate` (stable across runs,
// processes and platforms).
bool KeyIsMissing(absl::string_view key, double not_found_rate);

class OriginModel final {
 public:
  // REQUIRES: options.Validate().ok().
  explicit OriginModel(const OriginModelOptions& options);
  OriginModel(const OriginModel&) = delete;
  OriginModel& operator=(const OriginModel&) = delete;

  // Counts the fetch as in flight (a rejected one is over at once: no EndFetch).
  FetchPlan BeginFetch(absl::string_view key, uint32_t attempt);
  // Ends the fetch of `key` that BeginFetch planned and gives its answer: for kAnswered, a value
  // (the key's next version) with the TTL, NOT_FOUND or UNAVAILABLE as planned; CANCELLED or
  // DEADLINE_EXCEEDED for the other ends.
  // REQUIRES: one call per BeginFetch whose plan was not kRejected, with the same key.
  absl::StatusOr<FetchResult> EndFetch(absl::string_view key, const FetchPlan& plan, FetchEnd how);
  // What a rejected fetch answers (RESOURCE_EXHAUSTED).
  static absl::Status RejectedStatus();

  OriginCounters counters() const;
  uint64_t version(absl::string_view key) const;  // 0 if never answered with a value
  const OriginModelOptions& options() const { return options_; }

 private:
  uint64_t& VersionOf(absl::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const OriginModelOptions options_;
  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> versions_ ABSL_GUARDED_BY(mu_);  // version_slots 0
  std::vector<uint64_t> version_slots_ ABSL_GUARDED_BY(mu_);                  // version_slots N
  OriginCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache::sim

#endif  // FLIGHTCACHE_SIM_ORIGIN_MODEL_H_
