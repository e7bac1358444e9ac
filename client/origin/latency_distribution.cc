#include "client/origin/latency_distribution.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flightcache::demo_origin {
namespace {

absl::StatusOr<absl::Duration> ParseNonNegativeDuration(absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a duration (use units: 5ms, 1s)"));
  }
  return d;
}

absl::StatusOr<double> ParseNumber(absl::string_view text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a number"));
  }
  return v;
}

}  // namespace

absl::StatusOr<LatencyDistribution> LatencyDistribution::Parse(absl::string_view spec) {
  const std::pair<absl::string_view, absl::string_view> kind_args =
      absl::StrSplit(spec, absl::MaxSplits(':', 1));
  const std::vector<absl::string_view> args = absl::StrSplit(kind_args.second, ',');
  const absl::string_view kind = kind_args.first;
  LatencyDistribution d;
  auto usage = [&]() {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", spec,
        "': expected fixed:D, uniform:MIN,MAX, lognormal:MEDIAN,SIGMA or bimodal:FAST,SLOW,P"));
  };
  if (kind == "fixed" && args.size() == 1) {
    absl::StatusOr<absl::Duration> v = ParseNonNegativeDuration(args[0]);
    if (!v.ok()) return v.status();
    d.kind = Kind::kFixed;
    d.a = *v;
    return d;
  }
  if (kind == "uniform" && args.size() == 2) {
    absl::StatusOr<absl::Duration> lo = ParseNonNegativeDuration(args[0]);
    if (!lo.ok()) return lo.status();
    absl::StatusOr<absl::Duration> hi = ParseNonNegativeDuration(args[1]);
    if (!hi.ok()) return hi.status();
    if (*hi < *lo) return absl::InvalidArgumentError("uniform: MAX must be >= MIN");
    d.kind = Kind::kUniform;
    d.a = *lo;
    d.b = *hi;
    return d;
  }
  if (kind == "lognormal" && args.size() == 2) {
    absl::StatusOr<absl::Duration> median = ParseNonNegativeDuration(args[0]);
    if (!median.ok()) return median.status();
    absl::StatusOr<double> sigma = ParseNumber(args[1]);
    if (!sigma.ok()) return sigma.status();
    if (*median <= absl::ZeroDuration())
      return absl::InvalidArgumentError("lognormal: MEDIAN must be > 0");
    if (*sigma < 0 || *sigma > 5)
      return absl::InvalidArgumentError("lognormal: SIGMA must be in [0, 5]");
    d.kind = Kind::kLognormal;
    d.a = *median;
    d.p = *sigma;
    return d;
  }
  if (kind == "bimodal" && args.size() == 3) {
    absl::StatusOr<absl::Duration> fast = ParseNonNegativeDuration(args[0]);
    if (!fast.ok()) return fast.status();
    absl::StatusOr<absl::Duration> slow = ParseNonNegativeDuration(args[1]);
    if (!slow.ok()) return slow.status();
    absl::StatusOr<double> p = ParseNumber(args[2]);
    if (!p.ok()) return p.status();
    if (*p < 0 || *p > 1) return absl::InvalidArgumentError("bimodal: P must be in [0, 1]");
    d.kind = Kind::kBimodal;
    d.a = *fast;
    d.b = *slow;
    d.p = *p;
    return d;
  }
  return usage();
}

std::string LatencyDistribution::ToString() const {
  switch (kind) {
    case Kind::kFixed:
      return absl::StrCat("fixed:", absl::FormatDuration(a));
    case Kind::kUniform:
      return absl::StrCat("uniform:", absl::FormatDuration(a), ",", absl::FormatDuration(b));
    case Kind::kLognormal:
      return absl::StrCat("lognormal:", absl::FormatDuration(a), ",", p);
    case Kind::kBimodal:
      return absl::StrCat("bimodal:", absl::FormatDuration(a), ",", absl::FormatDuration(b), ",",
                          p);
  }
  return "?";
}

absl::Duration LatencyDistribution::Sample(std::mt19937_64& rng) const {
  switch (kind) {
    case Kind::kFixed:
      return a;
    case Kind::kUniform: {
      const int64_t lo = absl::ToInt64Nanoseconds(a);
      const int64_t hi = absl::ToInt64Nanoseconds(b);
      return absl::Nanoseconds(std::uniform_int_distribution<int64_t>(lo, hi)(rng));
    }
    case Kind::kLognormal: {
      std::lognormal_distribution<double> dist(std::log(absl::ToDoubleSeconds(a)), p);
      // Capped at an hour so that a wild draw with a large sigma cannot overflow.
      return absl::Seconds(std::min(dist(rng), 3600.0));
    }
    case Kind::kBimodal:
      return std::bernoulli_distribution(p)(rng) ? b : a;
  }
  return a;
}

}  // namespace flightcache::demo_origin
