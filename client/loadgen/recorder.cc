#include "client/loadgen/recorder.h"

#include <algorithm>
#include <utility>

namespace flightcache::loadgen {

absl::string_view SourceName(Source source) {
  switch (source) {
    case Source::kUnspecified:
      return "UNSPECIFIED";
    case Source::kHit:
      return "HIT";
    case Source::kLoaded:
      return "LOADED";
    case Source::kCoalesced:
      return "COALESCED";
    case Source::kStale:
      return "STALE";
    case Source::kFleet:
      return "FLEET";
  }
  return "UNSPECIFIED";
}

bool IsError(absl::StatusCode code) {
  return code != absl::StatusCode::kOk && code != absl::StatusCode::kNotFound;
}

int64_t RunTotals::errors() const {
  int64_t errors = 0;
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (IsError(static_cast<absl::StatusCode>(code))) errors += codes[code];
  }
  return errors;
}

double RunTotals::error_rate() const {
  return items == 0 ? 0.0 : static_cast<double>(errors()) / static_cast<double>(items);
}

void LatencyRecorder::Add(RunTotals& totals, uint64_t latency_ns,
                          absl::Span<const ItemResult> items, CallKind kind) {
  ++totals.calls;
  int kind_index = static_cast<int>(kind);
  if (kind_index < 0 || kind_index >= kCallKindCount) kind_index = 0;
  ++totals.kinds[kind_index];
  totals.latency_ns.Record(latency_ns);
  for (const ItemResult& item : items) {
    ++totals.items;
    int code = static_cast<int>(item.code);
    if (code < 0 || code >= kStatusCodeCount) code = static_cast<int>(absl::StatusCode::kUnknown);
    ++totals.codes[code];
    if (item.code == absl::StatusCode::kOk) {
      int source = static_cast<int>(item.source);
      if (source < 0 || source >= kSourceCount) source = 0;
      ++totals.sources[source];
    }
  }
}

void LatencyRecorder::Record(absl::Duration latency, absl::Span<const ItemResult> items,
                             CallKind kind) {
  // A latency can come out negative only if a fake clock went backwards; clamp rather than wrap.
  const uint64_t ns =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Nanoseconds(latency)));
  absl::MutexLock lock(&mu_);
  Add(total_, ns, items, kind);
  Add(interval_, ns, items, kind);
}

RunTotals LatencyRecorder::Totals() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

RunTotals LatencyRecorder::TakeInterval() {
  RunTotals fresh;
  absl::MutexLock lock(&mu_);
  std::swap(fresh, interval_);
  return fresh;
}

}  // namespace flightcache::loadgen
