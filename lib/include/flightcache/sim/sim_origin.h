// SimOrigin: the built-in simulated origin behind the server's `--origin=sim://?...` (its
// default), so the sidecar runs — and can be benchmarked — with no backend at all. An Origin
// adapter over sim::OriginModel (origin_model.h: what each fetch answers and when; the same model
// the demo program flightcache-origin serves over gRPC).
//
// Each fetch answers after a latency drawn from the model, driven by a TimerQueue: no thread
// sleeps per fetch, so 10,000 fetches in flight cost 10,000 timers, not threads. When the fetch's
// stop token fires first, its timer is cancelled and it answers CANCELLED at once.
//
// URL parameters (all optional; an unknown parameter or a bad value is a config error):
//   latency_ms=20  jitter_ms=5     latency ± uniform jitter (LatencyDistribution jitter:D,J)
//   latency=SPEC                   instead of those two: any LatencyDistribution spec, e.g.
//                                  latency=lognormal:5ms,0.5
//   value_bytes=128  error_rate=0 (share of fetches answered UNAVAILABLE)
//   not_found_rate=0 (share of keys answered NOT_FOUND, always the same keys: KeyIsMissing)
//   ttl_ms=0 (0: the server's default TTL)  seed=N (fixed random seed, for reproducible runs)
// Versions are kept in 65,536 slots (OriginModelOptions::version_slots), so memory stays bounded.
//
// Thread-safety: thread-safe. Lifetime: the TimerQueue must outlive the SimOrigin, and the
// SimOrigin must outlive every fetch's `done` (the FlightCache guarantees that by waiting for its
// fetches in its destructor).
//
// Usage:
//   absl::StatusOr<OriginModelOptions> options =
//   ParseSimOriginQuery("latency_ms=5&value_bytes=64"); SimOrigin origin(*options, timers);
#ifndef FLIGHTCACHE_SIM_SIM_ORIGIN_H_
#define FLIGHTCACHE_SIM_SIM_ORIGIN_H_

#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "flightcache/origin.h"
#include "flightcache/sim/origin_model.h"
#include "flightcache/timer_queue.h"

namespace flightcache::sim {

// What sim:// with no parameters means: latency_ms=20&jitter_ms=5&value_bytes=128, 65,536
// version slots, a random seed.
OriginModelOptions SimOriginDefaults();

// Parses the query part of a sim:// URL ("latency_ms=20&jitter_ms=5"; may be empty). Errors name
// the parameter. Parameters not given keep SimOriginDefaults().
absl::StatusOr<OriginModelOptions> ParseSimOriginQuery(absl::string_view query);

// The canonical URL for `options`, e.g. "sim://?latency_ms=20&jitter_ms=5&...", which
// ParseSimOriginQuery reads back (overload and rejection, which sim:// does not set, are left
// out).
std::string SimOriginUrl(const OriginModelOptions& options);

class SimOrigin final : public Origin {
 public:
  // REQUIRES: options.Validate().ok().
  SimOrigin(const OriginModelOptions& options, TimerQueue& timers);
  ~SimOrigin() override;
  SimOrigin(const SimOrigin&) = delete;
  SimOrigin& operator=(const SimOrigin&) = delete;

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override;
  std::string Describe() const override;

  OriginCounters counters() const { return model_.counters(); }

 private:
  struct PendingFetch;

  OriginModel model_;
  TimerQueue& timers_;
};

}  // namespace flightcache::sim

#endif  // FLIGHTCACHE_SIM_SIM_ORIGIN_H_
