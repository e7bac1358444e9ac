#include "client/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace flightcache::loadgen {

Histogram::Histogram() : counts_(kBucketCount, 0) {}

size_t Histogram::BucketIndex(uint64_t value) {
  if (value < 2 * kSubBuckets) return static_cast<size_t>(value);
  const int msb = 63 - std::countl_zero(value);  // >= kSubBucketBits + 1
  const int shift = msb - kSubBucketBits;        // >= 1
  const uint64_t top = value >> shift;           // in [128, 256)
  return static_cast<size_t>(shift) * kSubBuckets + static_cast<size_t>(top);
}

uint64_t Histogram::BucketLowest(size_t index) {
  if (index < 2 * kSubBuckets) return index;
  const int shift = static_cast<int>(index / kSubBuckets) - 1;
  const uint64_t top = index % kSubBuckets + kSubBuckets;
  return top << shift;
}

uint64_t Histogram::BucketHighest(size_t index) {
  if (index < 2 * kSubBuckets) return index;
  const int shift = static_cast<int>(index / kSubBuckets) - 1;
  const uint64_t top = index % kSubBuckets + kSubBuckets;
  // For the very last bucket (top + 1) << shift overflows to 0, and 0 - 1 is UINT64_MAX: right.
  return ((top + 1) << shift) - 1;
}

void Histogram::Record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  counts_[BucketIndex(value)] += count;
  count_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * count;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

double Histogram::mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_); }

uint64_t Histogram::ValueAtQuantile(double q) const {
  if (count_ == 0) return 0;
  if (q >= 1.0) return max_;
  if (q <= 0.0) return min_;
  // The rank (1-based) of the order statistic asked for.
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t low = BucketLowest(i);
      const uint64_t mid = low + (BucketHighest(i) - low) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace flightcache::loadgen
