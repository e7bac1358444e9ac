// LatencyDistribution: how long a simulated origin (sim::OriginModel) takes to answer one fetch.
//
// Spec syntax (flightcache-origin's --latency flag, sim://'s latency= parameter), durations with
// units:
//   fixed:D                 always D                            fixed:5ms
//   jitter:D,J              D ± uniform J, at least 0           jitter:20ms,5ms
//                           (sim://'s latency_ms=20&jitter_ms=5 is this shape)
//   uniform:MIN,MAX         uniform in [MIN, MAX]               uniform:2ms,10ms
//   lognormal:MEDIAN,SIGMA  exp(N(ln MEDIAN, SIGMA²)): a long right tail, like real backends
//                                                               lognormal:5ms,0.5
//   bimodal:FAST,SLOW,P     SLOW with probability P, else FAST  bimodal:5ms,200ms,0.02
//   keyed:FAST,SLOW,P       SLOW for a share P of the keys (the same keys on every fetch), else
//                           FAST: a tail that a retry to the same backend does not escape, like
//                           a cold partition or a hot shard             keyed:5ms,200ms,0.1
//
// Thread-safety: an immutable value; Sample() uses the caller's generator.
#ifndef FLIGHTCACHE_SIM_LATENCY_DISTRIBUTION_H_
#define FLIGHTCACHE_SIM_LATENCY_DISTRIBUTION_H_

#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flightcache::sim {

struct LatencyDistribution {
  enum class Kind { kFixed, kJitter, kUniform, kLognormal, kBimodal, kKeyed };
  Kind kind = Kind::kFixed;
  // fixed D, jitter D, uniform MIN, lognormal MEDIAN, bimodal and keyed FAST
  absl::Duration a = absl::Milliseconds(5);
  absl::Duration b;  // jitter J, uniform MAX, bimodal and keyed SLOW
  double p = 0;      // lognormal SIGMA, bimodal P(slow), keyed share of slow keys

  static absl::StatusOr<LatencyDistribution> Parse(absl::string_view spec);
  static LatencyDistribution Fixed(absl::Duration d) { return {.kind = Kind::kFixed, .a = d}; }
  static LatencyDistribution Jitter(absl::Duration d, absl::Duration j) {
    return {.kind = Kind::kJitter, .a = d, .b = j};
  }
  // The spec that parses back to this distribution.
  std::string ToString() const;

  // A latency >= 0 drawn from the distribution for a key at `key_point` in [0, 1) (a stable hash
  // of the key: keyed compares it with P; the other shapes ignore it). A fixed latency, a jitter
  // of 0 and keyed draw no random number.
  absl::Duration Sample(std::mt19937_64& rng, double key_point = 0) const;
  // No sample is longer than this.
  absl::Duration Max() const;
};

}  // namespace flightcache::sim

#endif  // FLIGHTCACHE_SIM_LATENCY_DISTRIBUTION_H_
