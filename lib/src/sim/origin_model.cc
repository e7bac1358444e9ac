#include "flightcache/sim/origin_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace flightcache::sim {
namespace {

constexpr int64_t kMaxValueBytes = int64_t{1} << 30;
constexpr int64_t kMaxVersionSlots = int64_t{1} << 24;
constexpr absl::string_view kValuePrefix = "sim-value v=";

// FNV-1a then a final mix: stable across runs and platforms, unlike absl::Hash, so that the same
// key is missing (and shares a version slot) in every process.
uint64_t StableKeyHash(absl::string_view key) {
  uint64_t h = 1469598103934665603ULL;
  for (const char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

bool FiniteNonNegative(absl::Duration d) {
  return d >= absl::ZeroDuration() && d != absl::InfiniteDuration();
}

// Where `key` falls in [0, 1), stable across processes.
double KeyPoint(absl::string_view key) {
  return static_cast<double>(StableKeyHash(key) >> 11) / static_cast<double>(uint64_t{1} << 53);
}

}  // namespace

absl::Status OriginModelOptions::Validate(
    absl::FunctionRef<std::string(absl::string_view)> spell) const {
  auto error = [&](absl::string_view option, absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat(spell(option), " must be ", want));
  };
  if (!FiniteNonNegative(latency.a) || !FiniteNonNegative(latency.b) ||
      !FiniteNonNegative(latency.Max()) || !std::isfinite(latency.p) || latency.p < 0) {
    return error("latency", "a finite duration >= 0");
  }
  if (value_bytes < 0 || value_bytes > kMaxValueBytes) {
    return error("value_bytes", absl::StrCat("in [0, ", kMaxValueBytes, "]"));
  }
  if (!(error_rate >= 0 && error_rate <= 1)) return error("error_rate", "in [0, 1]");
  if (!(not_found_rate >= 0 && not_found_rate <= 1)) return error("not_found_rate", "in [0, 1]");
  if (overload_threshold < 0) return error("overload_threshold", ">= 0");
  if (!(overload_slope >= 0) || !std::isfinite(overload_slope)) {
    return error("overload_slope", "a finite number >= 0");
  }
  if (reject_above < 0) return error("reject_above", ">= 0");
  if (!FiniteNonNegative(ttl)) return error("ttl", "a finite duration >= 0");
  if (version_slots < 0 || version_slots > kMaxVersionSlots) {
    return error("version_slots", absl::StrCat("in [0, ", kMaxVersionSlots, "]"));
  }
  return absl::OkStatus();
}

absl::Status OriginModelOptions::Validate() const {
  return Validate([](absl::string_view option) { return std::string(option); });
}

std::string EncodeSimValue(absl::string_view key, uint64_t version, int64_t value_bytes) {
  std::string value = absl::StrCat(kValuePrefix, version, " key=", key.size(), ":", key, "\n");
  if (static_cast<int64_t>(value.size()) < value_bytes) {
    value.resize(static_cast<size_t>(value_bytes), '.');
  }
  return value;
}

std::optional<SimValueInfo> DecodeSimValue(absl::string_view value) {
  if (!absl::ConsumePrefix(&value, kValuePrefix)) return std::nullopt;
  const size_t space = value.find(' ');
  if (space == absl::string_view::npos) return std::nullopt;
  SimValueInfo info;
  if (!absl::SimpleAtoi(value.substr(0, space), &info.version)) return std::nullopt;
  value.remove_prefix(space + 1);
  if (!absl::ConsumePrefix(&value, "key=")) return std::nullopt;
  const size_t colon = value.find(':');
  size_t key_size = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(value.substr(0, colon), &key_size)) {
    return std::nullopt;
  }
  value.remove_prefix(colon + 1);
  if (value.size() < key_size + 1 || value[key_size] != '\n') return std::nullopt;
  info.key = std::string(value.substr(0, key_size));
  return info;
}

bool KeyIsMissing(absl::string_view key, double not_found_rate) {
  if (not_found_rate <= 0) return false;
  return KeyPoint(key) < not_found_rate;
}

OriginModel::OriginModel(const OriginModelOptions& options)
    : options_(options),
      rng_(options_.seed.has_value() ? *options_.seed : std::random_device{}()),
      version_slots_(static_cast<size_t>(options_.version_slots), 0) {}

uint64_t& OriginModel::VersionOf(absl::string_view key) {
  if (!version_slots_.empty()) return version_slots_[StableKeyHash(key) % version_slots_.size()];
  auto [it, inserted] = versions_.try_emplace(key, 0);
  if (inserted) ++counters_.keys;
  return it->second;
}

FetchPlan OriginModel::BeginFetch(absl::string_view key, uint32_t attempt) {
  FetchPlan plan;
  const bool missing = KeyIsMissing(key, options_.not_found_rate);
  absl::MutexLock lock(&mu_);
  ++counters_.fetches;
  ++(attempt >= 2 ? counters_.hedge_fetches : counters_.primary_fetches);
  (void)VersionOf(key);  // counts the key

  if (options_.reject_above > 0 && counters_.inflight >= options_.reject_above) {
    ++counters_.rejected;
    plan.outcome = FetchOutcome::kRejected;
    return plan;
  }
  const int64_t inflight = ++counters_.inflight;
  counters_.peak_inflight = std::max(counters_.peak_inflight, inflight);

  // keyed: the slow keys are counted from the other end of [0, 1) than the missing ones, so the
  // two shares overlap only when they add up to more than 1.
  plan.latency = options_.latency.Sample(rng_, 1.0 - KeyPoint(key));
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
  }
  return plan;
}

absl::StatusOr<FetchResult> OriginModel::EndFetch(absl::string_view key, const FetchPlan& plan,
                                                  FetchEnd how) {
  // A rejected fetch was never in flight (REQUIRES: no EndFetch); it answers as BeginFetch said.
  if (plan.outcome == FetchOutcome::kRejected) return RejectedStatus();
  uint64_t version = 0;
  {
    absl::MutexLock lock(&mu_);
    --counters_.inflight;
    switch (how) {
      case FetchEnd::kDeadlineExceeded:
        ++counters_.deadline_exceeded;
        ++counters_.cancelled;
        return absl::DeadlineExceededError("simulated origin: fetch past its deadline");
      case FetchEnd::kCancelled:
        ++counters_.cancelled;
        return absl::CancelledError("simulated origin: fetch cancelled");
      case FetchEnd::kAnswered:
        break;
    }
    switch (plan.outcome) {
      case FetchOutcome::kValue:
        ++counters_.values;
        version = ++VersionOf(key);
        break;
      case FetchOutcome::kNotFound:
        ++counters_.not_found;
        return absl::NotFoundError("simulated origin: no such key (not_found_rate)");
      case FetchOutcome::kError:
        ++counters_.errors;
        return absl::UnavailableError("simulated origin: injected error (error_rate)");
      case FetchOutcome::kRejected:
        break;  // handled above
    }
  }
  return FetchResult{EncodeSimValue(key, version, options_.value_bytes), options_.ttl};
}

absl::Status OriginModel::RejectedStatus() {
  return absl::ResourceExhaustedError("simulated origin: overloaded (reject_above)");
}

OriginCounters OriginModel::counters() const {
  absl::MutexLock lock(&mu_);
  return counters_;
}

uint64_t OriginModel::version(absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  if (!version_slots_.empty()) return version_slots_[StableKeyHash(key) % version_slots_.size()];
  auto it = versions_.find(key);
  return it == versions_.end() ? 0 : it->second;
}

}  // namespace flightcache::sim
