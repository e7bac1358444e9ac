// SimOrigin: the built-in simulated origin behind `--origin=sim://?...` (the server's default),
// so the sidecar runs — and can be benchmarked — with no backend at all.
//
// Each fetch answers after `latency` ± uniform `jitter`, driven by a TimerQueue: no thread
// sleeps per fetch, so 10,000 fetches in flight cost 10,000 timers, not threads. With probability
// `error_rate` the answer is UNAVAILABLE, else with probability `not_found_rate` NOT_FOUND, else a
// value of `value_bytes` bytes that encodes the key and a per-key version (see MakeValue), so a
// test can check that it got the right key and whether the value was re-fetched. When the fetch's
// stop token fires first, its timer is cancelled and it answers CANCELLED at once.
//
// URL parameters (all optional; an unknown parameter or a bad value is a config error):
//   latency_ms=20  jitter_ms=5  value_bytes=128  error_rate=0  not_found_rate=0
//   ttl_ms=0 (0: the server's default TTL)  seed=N (fixed random seed, for reproducible runs)
//
// Thread-safety: thread-safe. Lifetime: the TimerQueue must outlive the SimOrigin, and the
// SimOrigin must outlive every fetch's `done` (the FlightCache guarantees that by waiting for its
// fetches in its destructor).
//
// Usage:
//   absl::StatusOr<SimOriginOptions> options = ParseSimOriginQuery("latency_ms=5&value_bytes=64");
//   SimOrigin origin(*options, timers);
#ifndef FLIGHTCACHE_SERVER_SIM_ORIGIN_H_
#define FLIGHTCACHE_SERVER_SIM_ORIGIN_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/origin.h"
#include "flightcache/timer_queue.h"

namespace flightcache {

struct SimOriginOptions {
  absl::Duration latency = absl::Milliseconds(20);
  absl::Duration jitter = absl::Milliseconds(5);
  int64_t value_bytes = 128;
  double error_rate = 0;
  double not_found_rate = 0;
  absl::Duration ttl = absl::ZeroDuration();
  std::optional<uint64_t> seed;

  absl::Status Validate() const;
  // The canonical URL for these options, e.g. "sim://?latency_ms=20&jitter_ms=5&...".
  std::string ToUrl() const;
};

// Parses the query part of a sim:// URL ("latency_ms=20&jitter_ms=5"; may be empty). Errors name
// the parameter. Parameters not given keep SimOriginOptions' defaults.
absl::StatusOr<SimOriginOptions> ParseSimOriginQuery(absl::string_view query);

// What a SimOrigin value says about itself.
struct SimValueInfo {
  std::string key;
  uint64_t version = 0;
};

class SimOrigin final : public Origin {
 public:
  // REQUIRES: options.Validate().ok().
  SimOrigin(SimOriginOptions options, TimerQueue& timers);
  ~SimOrigin() override;
  SimOrigin(const SimOrigin&) = delete;
  SimOrigin& operator=(const SimOrigin&) = delete;

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override;
  std::string Describe() const override;

  // The value the `version`th answer for `key` carries: a header naming the version and the key,
  // padded to `value_bytes` (never truncated: a value_bytes smaller than the header gives just the
  // header, so the key can always be read back).
  static std::string MakeValue(absl::string_view key, uint64_t version, int64_t value_bytes);
  // Reads back what MakeValue wrote; nothing for a value it did not make.
  static std::optional<SimValueInfo> ParseValue(absl::string_view value);

  int64_t fetches() const { return fetches_.load(std::memory_order_relaxed); }
  int64_t cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  struct PendingFetch;
  enum class Outcome { kValue, kNotFound, kError };

  // Draws this fetch's delay and outcome.
  std::pair<absl::Duration, Outcome> Draw();
  // Bumps and returns the key's version. Versions live in a fixed table of slots indexed by the
  // key's hash, so memory stays bounded however many keys a load test touches; two keys that
  // share a slot share a counter (each key's versions still strictly increase).
  uint64_t NextVersion(absl::string_view key);
  void Answer(PendingFetch& fetch);

  static constexpr size_t kVersionSlots = 1 << 16;

  const SimOriginOptions options_;
  TimerQueue& timers_;
  absl::Mutex rng_mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(rng_mu_);
  // Relaxed: independent counters, never used to order other memory.
  std::unique_ptr<std::array<std::atomic<uint64_t>, kVersionSlots>> versions_;
  std::atomic<int64_t> fetches_{0};
  std::atomic<int64_t> cancelled_{0};
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_SIM_ORIGIN_H_
