// OriginModel: the behaviour of the demo origin, without any gRPC — what each fetch answers,
// how long it takes, and the counters tests and operators read.
//
// For each fetch, BeginFetch() decides, in this order:
//   rejected   more than `reject_above` fetches in flight (0: never): RESOURCE_EXHAUSTED at once;
//   not found  a fixed share `not_found_rate` of the *keys* (chosen by a hash of the key, so a
//              key that does not exist never does — as with a real backend) answer NOT_FOUND;
//   error      each fetch fails with probability `error_rate` (UNAVAILABLE, a transient error);
//   value      otherwise. Each value fetch of a key bumps that key's version, and the value
//              encodes key and version (EncodeValue) padded to `value_bytes`, so a test can tell
//              whether it got a newer value.
// Latency is drawn from `latency`; above `overload_threshold` fetches in flight (0: never) it is
// multiplied by 1 + overload_slope·(in_flight − threshold)/threshold, modelling a backend that
// slows down in proportion to its overload. The caller waits that long (on a timer) and then
// calls EndFetch(); a fetch cancelled by the client ends with kCancelled/kDeadlineExceeded.
//
// Thread-safety: thread-safe (one mutex; BeginFetch and EndFetch are O(1) apart from the value
// copy).
//
// Usage:
//   OriginModel model(options);
//   FetchPlan plan = model.BeginFetch("user:1", /*attempt=*/1);
//   ... after plan.latency ...
//   model.EndFetch(plan.outcome, FetchEnd::kAnswered);
#ifndef FLIGHTCACHE_CLIENT_ORIGIN_ORIGIN_MODEL_H_
#define FLIGHTCACHE_CLIENT_ORIGIN_ORIGIN_MODEL_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/origin/latency_distribution.h"

namespace flightcache::demo_origin {

struct OriginModelOptions {
  LatencyDistribution latency;  // default fixed:5ms
  int64_t value_bytes = 128;
  double error_rate = 0;
  double not_found_rate = 0;
  int64_t overload_threshold = 0;
  double overload_slope = 1.0;
  int64_t reject_above = 0;
  absl::Duration ttl = absl::ZeroDuration();  // sent as ttl_ms; 0: the server's default TTL
  uint64_t seed = 1;

  absl::Status Validate() const;
};

enum class FetchOutcome { kValue, kNotFound, kError, kRejected };
enum class FetchEnd { kAnswered, kCancelled, kDeadlineExceeded };

struct FetchPlan {
  FetchOutcome outcome = FetchOutcome::kValue;
  absl::Duration latency;
  std::string value;    // kValue only
  int64_t version = 0;  // kValue only: 1 for the key's first value fetch
  int64_t ttl_ms = 0;
};

struct OriginCounters {
  int64_t fetches = 0;          // every Fetch call received
  int64_t primary_fetches = 0;  // attempt 1 (or 0: unset)
  int64_t hedge_fetches = 0;    // attempt >= 2
  int64_t values = 0;           // answered with a value
  int64_t not_found = 0;
  int64_t errors = 0;
  int64_t rejected = 0;
  int64_t cancelled = 0;          // the caller cancelled before the answer (deadline included)
  int64_t deadline_exceeded = 0;  // of those, at (within 100 ms of) the call's deadline
  int64_t inflight = 0;
  int64_t peak_inflight = 0;  // most fetches in flight at once
  int64_t keys = 0;           // distinct keys fetched
};

// "v<version>:<key length>:<key>;" then '.' up to `size` bytes (never truncated).
std::string EncodeValue(absl::string_view key, int64_t version, int64_t size);
// Inverse of EncodeValue; false if `value` is not in that format.
bool DecodeValue(absl::string_view value, std::string* key, int64_t* version);

// Whether `key` is one of the keys that do not exist at `not_found_rate` (stable across runs).
bool KeyIsMissing(absl::string_view key, double not_found_rate);

class OriginModel final {
 public:
  // REQUIRES: options.Validate().ok().
  explicit OriginModel(OriginModelOptions options);
  OriginModel(const OriginModel&) = delete;
  OriginModel& operator=(const OriginModel&) = delete;

  // Counts the fetch as in flight (a rejected one is over at once: no EndFetch).
  FetchPlan BeginFetch(absl::string_view key, uint32_t attempt);
  // REQUIRES: one call per BeginFetch that was not rejected.
  void EndFetch(FetchOutcome outcome, FetchEnd how);

  OriginCounters counters() const;
  int64_t version(absl::string_view key) const;  // 0 if never fetched with a value
  const OriginModelOptions& options() const { return options_; }

 private:
  const OriginModelOptions options_;
  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> versions_ ABSL_GUARDED_BY(mu_);
  OriginCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache::demo_origin

#endif  // FLIGHTCACHE_CLIENT_ORIGIN_ORIGIN_MODEL_H_
