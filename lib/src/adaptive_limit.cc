#include "flightcache/adaptive_limit.h"

#include <algorithm>
#include <cassert>

#include "flightcache/option_checks.h"

namespace flightcache {
namespace {

constexpr int64_t kMaxAdaptiveLimit = 1'000'000;
constexpr int64_t kMinBatch = 10;
constexpr int64_t kProbeEvery = 200;  // batches
constexpr double kTolerance = 1.05;
constexpr double kMinGradient = 0.5;
constexpr double kOverloadGradient = 0.9;
constexpr double kRiseSmoothing = 0.2;
constexpr double kFallSmoothing = 0.5;

}  // namespace

absl::Status AdaptiveLimitOptions::Validate() const {
  if (absl::Status s = CheckRange("min_limit", min_limit, 1, kMaxAdaptiveLimit); !s.ok()) return s;
  return CheckRange("max_limit", max_limit, min_limit, kMaxAdaptiveLimit);
}

AdaptiveLimit::AdaptiveLimit(const AdaptiveLimitOptions& options)
    : options_(options), limit_(static_cast<double>(options.min_limit)) {
  assert(options.Validate().ok());
}

int64_t AdaptiveLimit::OnAnswer(absl::Duration latency, int64_t in_flight) {
  // A probe measures the origin unloaded: calls that ran beside more than min_limit others do not
  // count.
  if (probing_ && in_flight > options_.min_limit) return limit();
  batch_.push_back(latency);
  Sample(in_flight);
  return limit();
}

int64_t AdaptiveLimit::OnOverload(int64_t in_flight) {
  if (probing_) return limit();
  batch_overloaded_ = true;
  Sample(in_flight);
  return limit();
}

void AdaptiveLimit::Sample(int64_t in_flight) {
  ++batch_samples_;
  batch_max_in_flight_ = std::max(batch_max_in_flight_, in_flight);
  if (batch_samples_ < std::max(kMinBatch, limit())) return;
  if (probing_) {
    EndProbe();
  } else {
    EndBatch();
  }
}

absl::Duration AdaptiveLimit::BatchMedian() {
  auto middle = batch_.begin() + static_cast<std::ptrdiff_t>(batch_.size() / 2);
  std::nth_element(batch_.begin(), middle, batch_.end());
  return std::max(*middle, absl::Nanoseconds(1));
}

void AdaptiveLimit::EndProbe() {
  ++batches_;
  baseline_ = BatchMedian();
  probing_ = false;
  batch_.clear();
  batch_samples_ = 0;
  batch_max_in_flight_ = 0;
}

void AdaptiveLimit::EndBatch() {
  ++batches_;
  double gradient = kOverloadGradient;
  if (!batch_.empty()) {
    const absl::Duration median = BatchMedian();
    if (baseline_ == absl::ZeroDuration() || median < baseline_) baseline_ = median;
    gradient = std::clamp(kTolerance * absl::FDivDuration(baseline_, median), kMinGradient, 1.0);
    if (batch_overloaded_) gradient = std::min(gradient, kOverloadGradient);
  }
  const double growth = gradient >= 1.0 ? std::max(1.0, limit_ / 10) : 1.0;
  double target = limit_ * gradient + growth;
  // Fetches never reached half the limit: the limit did not hold them back, so do not raise it.
  if (2 * batch_max_in_flight_ < limit()) target = std::min(target, limit_);
  const double smoothing = target > limit_ ? kRiseSmoothing : kFallSmoothing;
  limit_ += smoothing * (target - limit_);
  limit_ = std::clamp(limit_, static_cast<double>(options_.min_limit),
                      static_cast<double>(options_.max_limit));

  batch_.clear();
  batch_samples_ = 0;
  batch_max_in_flight_ = 0;
  batch_overloaded_ = false;
  if (++batches_since_probe_ >= kProbeEvery) {
    batches_since_probe_ = 0;
    probing_ = true;
  }
}

}  // namespace flightcache
