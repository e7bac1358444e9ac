#include "client/origin/origin_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flightcache::demo_origin {

absl::Status OriginModelOptions::Validate() const {
  if (value_bytes < 0 || value_bytes > (int64_t{64} << 20)) {
    return absl::InvalidArgumentError("--value-bytes must be in [0, 64 MiB]");
  }
  if (!(error_rate >= 0 && error_rate <= 1)) {
    return absl::InvalidArgumentError("--error-rate must be in [0, 1]");
  }
  if (!(not_found_rate >= 0 && not_found_rate <= 1)) {
    return absl::InvalidArgumentError("--not-found-rate must be in [0, 1]");
  }
  if (overload_threshold < 0) {
    return absl::InvalidArgumentError("--overload-threshold must be >= 0");
  }
  if (!(overload_slope >= 0) || !std::isfinite(overload_slope)) {
    return absl::InvalidArgumentError("--overload-slope must be >= 0");
  }
  if (reject_above < 0) return absl::InvalidArgumentError("--reject-above must be >= 0");
  if (ttl < absl::ZeroDuration()) return absl::InvalidArgumentError("--ttl must be >= 0");
  return absl::OkStatus();
}

std::string EncodeValue(absl::string_view key, int64_t version, int64_t size) {
  std::string value = absl::StrCat("v", version, ":", key.size(), ":", key, ";");
  if (static_cast<int64_t>(value.size()) < size) value.resize(static_cast<size_t>(size), '.');
  return value;
}

bool DecodeValue(absl::string_view value, std::string* key, int64_t* version) {
  if (value.empty() || value[0] != 'v') return false;
  value.remove_prefix(1);
  const size_t colon = value.find(':');
  if (colon == absl::string_view::npos) return false;
  int64_t v = 0;
  if (!absl::SimpleAtoi(value.substr(0, colon), &v)) return false;
  value.remove_prefix(colon + 1);
  const size_t colon2 = value.find(':');
  if (colon2 == absl::string_view::npos) return false;
  uint64_t length = 0;
  if (!absl::SimpleAtoi(value.substr(0, colon2), &length)) return false;
  value.remove_prefix(colon2 + 1);
  if (value.size() < length + 1 || value[length] != ';') return false;
  *key = std::string(value.substr(0, length));
  *version = v;
  return true;
}

bool KeyIsMissing(absl::string_view key, double not_found_rate) {
  if (not_found_rate <= 0) return false;
  // FNV-1a then a final mix: stable across runs and platforms, unlike absl::Hash.
  uint64_t h = 1469598103934665603ULL;
  for (const char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  const double u = static_cast<double>(h >> 11) / static_cast<double>(uint64_t{1} << 53);
  return u < not_found_rate;
}

OriginModel::OriginModel(OriginModelOptions options)
    : options_(std::move(options)), rng_(options_.seed) {}

FetchPlan OriginModel::BeginFetch(absl::string_view key, uint32_t attempt) {
  FetchPlan plan;
  plan.ttl_ms = absl::ToInt64Milliseconds(options_.ttl);
  const bool missing = KeyIsMissing(key, options_.not_found_rate);
  absl::MutexLock lock(&mu_);
  ++counters_.fetches;
  ++(attempt >= 2 ? counters_.hedge_fetches : counters_.primary_fetches);
  auto [it, inserted] = versions_.try_emplace(key, 0);
  if (inserted) ++counters_.keys;

  if (options_.reject_above > 0 && counters_.inflight >= options_.reject_above) {
    ++counters_.rejected;
    plan.outcome = FetchOutcome::kRejected;
    return plan;
  }
  const int64_t inflight = ++counters_.inflight;
  counters_.peak_inflight = std::max(counters_.peak_inflight, inflight);

  plan.latency = options_.latency.Sample(rng_);
  if (options_.overload_threshold > 0 && inflight > options_.overload_threshold) {
    const double excess = static_cast<double>(inflight - options_.overload_threshold) /
                          static_cast<double>(options_.overload_threshold);
    plan.latency = plan.latency * (1.0 + options_.overload_slope * excess);
  }
  if (missing) {
    plan.outcome = FetchOutcome::kNotFound;
  } else if (options_.error_rate > 0 && std::bernoulli_distribution(options_.error_rate)(rng_)) {
    plan.outcome = FetchOutcome::kError;
  } else {
    plan.outcome = FetchOutcome::kValue;
    plan.version = ++it->second;
  }
  if (plan.outcome == FetchOutcome::kValue) {
    // Built under the lock only because `it` is; values are small in the demo.
    plan.value = EncodeValue(key, plan.version, options_.value_bytes);
  }
  return plan;
}

void OriginModel::EndFetch(FetchOutcome outcome, FetchEnd how) {
  absl::MutexLock lock(&mu_);
  --counters_.inflight;
  switch (how) {
    case FetchEnd::kDeadlineExceeded:
      ++counters_.deadline_exceeded;
      ++counters_.cancelled;
      return;
    case FetchEnd::kCancelled:
      ++counters_.cancelled;
      return;
    case FetchEnd::kAnswered:
      break;
  }
  switch (outcome) {
    case FetchOutcome::kValue:
      ++counters_.values;
      break;
    case FetchOutcome::kNotFound:
      ++counters_.not_found;
      break;
    case FetchOutcome::kError:
      ++counters_.errors;
      break;
    case FetchOutcome::kRejected:
      ++counters_.rejected;
      break;
  }
}

OriginCounters OriginModel::counters() const {
  absl::MutexLock lock(&mu_);
  return counters_;
}

int64_t OriginModel::version(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto it = versions_.find(key);
  return it == versions_.end() ? 0 : it->second;
}

}  // namespace flightcache::demo_origin
