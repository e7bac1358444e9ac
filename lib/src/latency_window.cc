#include "flightcache/latency_window.h"

#include <algorithm>
#include <cmath>
#include <iterator>

namespace flightcache {

LatencyWindow::LatencyWindow(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {
  samples_.reserve(capacity_);
}

void LatencyWindow::Add(absl::Duration latency) {
  if (samples_.size() < capacity_) {
    samples_.push_back(latency);
    return;
  }
  samples_[next_] = latency;
  next_ = (next_ + 1) % capacity_;
}

absl::Duration LatencyWindow::Percentile(double p) const {
  std::vector<absl::Duration> sorted = samples_;
  const size_t n = sorted.size();
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
  rank = std::clamp<size_t>(rank, 1, n);
  auto nth = sorted.begin() + static_cast<std::ptrdiff_t>(rank - 1);
  std::nth_element(sorted.begin(), nth, sorted.end());
  return *nth;
}

}  // namespace flightcache
