// LatencyDistribution: how long the demo origin takes to answer one fetch.
//
// Spec syntax (the --latency flag), durations with units:
//   fixed:D                 always D                          fixed:5ms
//   uniform:MIN,MAX         uniform in [MIN, MAX]             uniform:2ms,10ms
//   lognormal:MEDIAN,SIGMA  exp(N(ln MEDIAN, SIGMA²)): a long right tail, like real backends
//                                                             lognormal:5ms,0.5
//   bimodal:FAST,SLOW,P     SLOW with probability P, else FAST  bimodal:5ms,200ms,0.02
//
// Thread-safety: an immutable value; Sample() uses the caller's generator.
#ifndef FLIGHTCACHE_CLIENT_ORIGIN_LATENCY_DISTRIBUTION_H_
#define FLIGHTCACHE_CLIENT_ORIGIN_LATENCY_DISTRIBUTION_H_

#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flightcache::demo_origin {

struct LatencyDistribution {
  enum class Kind { kFixed, kUniform, kLognormal, kBimodal };
  Kind kind = Kind::kFixed;
  absl::Duration a = absl::Milliseconds(5);  // fixed D, uniform MIN, lognormal MEDIAN, bimodal FAST
  absl::Duration b;                          // uniform MAX, bimodal SLOW
  double p = 0;                              // lognormal SIGMA, bimodal P(slow)

  static absl::StatusOr<LatencyDistribution> Parse(absl::string_view spec);
  std::string ToString() const;

  // A latency >= 0 drawn from the distribution.
  absl::Duration Sample(std::mt19937_64& rng) const;
};

}  // namespace flightcache::demo_origin

#endif  // FLIGHTCACHE_CLIENT_ORIGIN_LATENCY_DISTRIBUTION_H_
