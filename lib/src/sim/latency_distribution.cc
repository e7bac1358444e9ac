#include "flightcache/sim/latency_distribution.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flightcache::sim {
namespace {

// A lognormal draw is capped at an hour so that a wild draw with a large sigma cannot overflow.
constexpr double kMaxLognormalSeconds = 3600;

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
  // The shape's arguments: `durations` durations, then `numbers` numbers.
  std::vector<absl::Duration> d;
  std::vector<double> n;
  auto parse_args = [&](size_t durations, size_t numbers) -> absl::Status {
    for (size_t i = 0; i < durations; ++i) {
      absl::StatusOr<absl::Duration> v = ParseNonNegativeDuration(args[i]);
      if (!v.ok()) return v.status();
      d.push_back(*v);
    }
    for (size_t i = durations; i < durations + numbers; ++i) {
      absl::StatusOr<double> v = ParseNumber(args[i]);
      if (!v.ok()) return v.status();
      n.push_back(*v);
    }
    return absl::OkStatus();
  };
  if (kind == "fixed" && args.size() == 1) {
    if (absl::Status s = parse_args(1, 0); !s.ok()) return s;
    return Fixed(d[0]);
  }
  if (kind == "jitter" && args.size() == 2) {
    if (absl::Status s = parse_args(2, 0); !s.ok()) return s;
    return Jitter(d[0], d[1]);
  }
  if (kind == "uniform" && args.size() == 2) {
    if (absl::Status s = parse_args(2, 0); !s.ok()) return s;
    if (d[1] < d[0]) return absl::InvalidArgumentError("uniform: MAX must be >= MIN");
    return LatencyDistribution{.kind = Kind::kUniform, .a = d[0], .b = d[1]};
  }
  if (kind == "lognormal" && args.size() == 2) {
    if (absl::Status s = parse_args(1, 1); !s.ok()) return s;
    if (d[0] <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("lognormal: MEDIAN must be > 0");
    }
    if (n[0] < 0 || n[0] > 5) {
      return absl::InvalidArgumentError("lognormal: SIGMA must be in [0, 5]");
    }
    return LatencyDistribution{.kind = Kind::kLognormal, .a = d[0], .p = n[0]};
  }
  if ((kind == "bimodal" || kind == "keyed") && args.size() == 3) {
    if (absl::Status s = parse_args(2, 1); !s.ok()) return s;
    if (n[0] < 0 || n[0] > 1) {
      return absl::InvalidArgumentError(absl::StrCat(kind, ": P must be in [0, 1]"));
    }
    return LatencyDistribution{
        .kind = kind == "keyed" ? Kind::kKeyed : Kind::kBimodal, .a = d[0], .b = d[1], .p = n[0]};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", spec,
                   "': expected fixed:D, jitter:D,J, uniform:MIN,MAX, lognormal:MEDIAN,SIGMA or "
                   "bimodal:FAST,SLOW,P or keyed:FAST,SLOW,P"));
}

std::string LatencyDistribution::ToString() const {
  switch (kind) {
    case Kind::kFixed:
      return absl::StrCat("fixed:", absl::FormatDuration(a));
    case Kind::kJitter:
      return absl::StrCat("jitter:", absl::FormatDuration(a), ",", absl::FormatDuration(b));
    case Kind::kUniform:
      return absl::StrCat("uniform:", absl::FormatDuration(a), ",", absl::FormatDuration(b));
    case Kind::kLognormal:
      return absl::StrCat("lognormal:", absl::FormatDuration(a), ",", p);
    case Kind::kBimodal:
    case Kind::kKeyed:
      return absl::StrCat(kind == Kind::kKeyed ? "keyed:" : "bimodal:", absl::FormatDuration(a),
                          ",", absl::FormatDuration(b), ",", p);
  }
  return "?";
}

absl::Duration LatencyDistribution::Sample(std::mt19937_64& rng, double key_point) const {
  switch (kind) {
    case Kind::kFixed:
      return a;
    case Kind::kJitter: {
      if (b <= absl::ZeroDuration()) return a;
      const absl::Duration d = a + std::uniform_real_distribution<double>(-1.0, 1.0)(rng) * b;
      return std::max(d, absl::ZeroDuration());
    }
    case Kind::kUniform: {
      const int64_t lo = absl::ToInt64Nanoseconds(a);
      const int64_t hi = absl::ToInt64Nanoseconds(b);
      return absl::Nanoseconds(std::uniform_int_distribution<int64_t>(lo, hi)(rng));
    }
    case Kind::kLognormal: {
      std::lognormal_distribution<double> dist(std::log(absl::ToDoubleSeconds(a)), p);
      return absl::Seconds(std::min(dist(rng), kMaxLognormalSeconds));
    }
    case Kind::kBimodal:
      return std::bernoulli_distribution(p)(rng) ? b : a;
    case Kind::kKeyed:
      return key_point < p ? b : a;
  }
  return a;
}

absl::Duration LatencyDistribution::Max() const {
  switch (kind) {
    case Kind::kFixed:
      return a;
    case Kind::kJitter:
      return a + b;
    case Kind::kUniform:
      return b;
    case Kind::kLognormal:
      return absl::Seconds(kMaxLognormalSeconds);
    case Kind::kBimodal:
    case Kind::kKeyed:
      return std::max(a, b);
  }
  return a;
}

}  // namespace flightcache::sim
