#include "client/loadgen/workload.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace flightcache::loadgen {
namespace {

// log1p(x)/x, accurate near 0.
double Helper1(double x) {
  return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

// expm1(x)/x, accurate near 0.
double Helper2(double x) {
  return std::abs(x) > 1e-8 ? std::expm1(x) / x
                            : 1 + x * 0.5 * (1 + x * (1.0 / 3.0) * (1 + 0.25 * x));
}

absl::StatusOr<double> ParseFraction(absl::string_view text, absl::string_view what) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", text, "' is not a number"));
  }
  return value;
}

}  // namespace

absl::StatusOr<KeyDistribution> KeyDistribution::Parse(absl::string_view spec) {
  const std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  KeyDistribution d;
  if (parts[0] == "uniform" && parts.size() == 1) {
    d.kind = Kind::kUniform;
    return d;
  }
  if (parts[0] == "sequential" && parts.size() == 1) {
    d.kind = Kind::kSequential;
    return d;
  }
  if (parts[0] == "zipf" && parts.size() == 2) {
    absl::StatusOr<double> s = ParseFraction(parts[1], "zipf exponent");
    if (!s.ok()) return s.status();
    if (*s <= 0 || *s > 100) {
      return absl::InvalidArgumentError("zipf exponent must be > 0 (e.g. zipf:0.99)");
    }
    d.kind = Kind::kZipf;
    d.zipf_exponent = *s;
    return d;
  }
  if (parts[0] == "hot" && (parts.size() == 2 || parts.size() == 3)) {
    absl::StatusOr<double> f = ParseFraction(parts[1], "hot key fraction");
    if (!f.ok()) return f.status();
    if (*f <= 0 || *f >= 1) {
      return absl::InvalidArgumentError("hot key fraction must be in (0, 1), e.g. hot:0.2");
    }
    double p = 1 - *f;
    if (parts.size() == 3) {
      absl::StatusOr<double> share = ParseFraction(parts[2], "hot request share");
      if (!share.ok()) return share.status();
      p = *share;
    }
    if (p <= 0 || p > 1) {
      return absl::InvalidArgumentError("hot request share must be in (0, 1], e.g. hot:0.1:0.9");
    }
    d.kind = Kind::kHot;
    d.hot_key_fraction = *f;
    d.hot_request_share = p;
    return d;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown distribution '", spec, "' (expected uniform, zipf:S, hot:F[:P] or sequential)"));
}

std::string KeyDistribution::ToString() const {
  switch (kind) {
    case Kind::kUniform:
      return "uniform";
    case Kind::kZipf:
      return absl::StrCat("zipf:", zipf_exponent);
    case Kind::kHot:
      return absl::StrCat("hot:", hot_key_fraction, ":", hot_request_share);
    case Kind::kSequential:
      return "sequential";
  }
  return "?";
}

ZipfSampler::ZipfSampler(uint64_t n, double s) : n_(n), s_(s) {
  h_integral_x1_ = H(1.5) - 1.0;
  h_integral_n_ = H(static_cast<double>(n_) + 0.5);
  threshold_ = 2 - HInverse(H(2.5) - h(2));
}

double ZipfSampler::h(double x) const { return std::exp(-s_ * std::log(x)); }

double ZipfSampler::H(double x) const {
  const double log_x = std::log(x);
  return Helper2((1 - s_) * log_x) * log_x;
}

double ZipfSampler::HInverse(double x) const {
  double t = x * (1 - s_);
  if (t < -1) t = -1;  // numerical safety, as in the reference implementation
  return std::exp(Helper1(t) * x);
}

uint64_t ZipfSampler::Sample(std::mt19937_64& rng) const {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  while (true) {
    const double u = h_integral_n_ + uniform(rng) * (h_integral_x1_ - h_integral_n_);
    const double x = HInverse(u);
    double k = std::floor(x + 0.5);
    k = std::clamp(k, 1.0, static_cast<double>(n_));
    if (k - x <= threshold_ || u >= H(k + 0.5) - h(k)) return static_cast<uint64_t>(k);
  }
}

KeyChooser::KeyChooser(KeyDistribution distribution, uint64_t num_keys, uint64_t seed)
    : distribution_(distribution),
      num_keys_(num_keys),
      rng_(seed),
      zipf_(num_keys,
            distribution.kind == KeyDistribution::Kind::kZipf ? distribution.zipf_exponent : 1.0) {
  if (distribution_.kind == KeyDistribution::Kind::kHot) {
    hot_keys_ = static_cast<uint64_t>(
        std::ceil(distribution_.hot_key_fraction * static_cast<double>(num_keys_)));
    hot_keys_ = std::clamp<uint64_t>(hot_keys_, 1, num_keys_);
  }
}

uint64_t KeyChooser::Next() {
  switch (distribution_.kind) {
    case KeyDistribution::Kind::kUniform:
      return std::uniform_int_distribution<uint64_t>(0, num_keys_ - 1)(rng_);
    case KeyDistribution::Kind::kZipf:
      return zipf_.Sample(rng_) - 1;
    case KeyDistribution::Kind::kHot: {
      const bool hot = hot_keys_ == num_keys_ || std::uniform_real_distribution<double>(
                                                     0, 1)(rng_) < distribution_.hot_request_share;
      if (hot) return std::uniform_int_distribution<uint64_t>(0, hot_keys_ - 1)(rng_);
      return std::uniform_int_distribution<uint64_t>(hot_keys_, num_keys_ - 1)(rng_);
    }
    case KeyDistribution::Kind::kSequential: {
      const uint64_t index = next_sequential_;
      next_sequential_ = next_sequential_ + 1 == num_keys_ ? 0 : next_sequential_ + 1;
      return index;
    }
  }
  return 0;
}

absl::Status WorkloadOptions::Validate() const {
  if (num_keys < 1) return absl::InvalidArgumentError("--keys must be at least 1");
  if (batch_size < 1) return absl::InvalidArgumentError("--batch must be at least 1");
  if (batch_size > 100000) return absl::InvalidArgumentError("--batch must be at most 100000");
  if (!(invalidate_share >= 0 && invalidate_share <= 1)) {
    return absl::InvalidArgumentError("--invalidate-share must be in [0, 1]");
  }
  if (!(batch_share >= 0 && batch_share <= 1)) {
    return absl::InvalidArgumentError("--batch-share must be in [0, 1]");
  }
  // A small tolerance: 0.3 + 0.7 is 1.0000000000000002 in doubles.
  if (invalidate_share + batch_share > 1 + 1e-9) {
    return absl::InvalidArgumentError(
        "--invalidate-share plus --batch-share must be at most 1 (the rest are Get calls)");
  }
  if (batch_share > 0 && batch_size < 2) {
    return absl::InvalidArgumentError(
        "--batch-share needs --batch of at least 2 keys per BatchGet");
  }
  return absl::OkStatus();
}

Workload::Workload(WorkloadOptions options)
    : options_(std::move(options)),
      herd_nonce_(
          !options_.herd_nonce.empty()
              ? options_.herd_nonce
              : absl::StrCat(absl::Hex(options_.seed), absl::Hex(absl::ToUnixNanos(absl::Now())))),
      chooser_(options_.distribution, options_.num_keys, options_.seed),
      mix_rng_(options_.seed ^ 0x5851f42d4c957f2dULL) {}

std::string Workload::KeyName(uint64_t index) const {
  return absl::StrCat(options_.key_prefix, index);
}

std::vector<std::string> Workload::NextKeys() {
  std::vector<uint64_t> indices(options_.batch_size);
  {
    absl::MutexLock lock(&mu_);
    for (uint64_t& index : indices) index = chooser_.Next();
  }
  std::vector<std::string> keys;
  keys.reserve(indices.size());
  for (const uint64_t index : indices) keys.push_back(KeyName(index));
  return keys;
}

Operation Workload::NextOperation() {
  Operation op;
  uint64_t index = 0;
  {
    absl::MutexLock lock(&mu_);
    if (options_.batch_share >= 1) {
      op.kind = CallKind::kBatchGet;
    } else if (options_.invalidate_share > 0 || options_.batch_share > 0) {
      const double coin = std::uniform_real_distribution<double>(0, 1)(mix_rng_);
      if (coin < options_.invalidate_share) {
        op.kind = CallKind::kInvalidate;
      } else if (coin < options_.invalidate_share + options_.batch_share) {
        op.kind = CallKind::kBatchGet;
      }
    }
    if (op.kind != CallKind::kBatchGet) index = chooser_.Next();
  }
  if (op.kind == CallKind::kBatchGet) {
    op.keys = NextKeys();
  } else {
    op.keys.push_back(KeyName(index));
  }
  return op;
}

std::string Workload::HerdKey(int wave) const {
  return absl::StrCat(options_.key_prefix, "herd-", herd_nonce_, "-", wave);
}

}  // namespace flightcache::loadgen
