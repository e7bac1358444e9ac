// LatencyRecorder: the thread-safe sink for every finished call of a load run — part of the
// loadgen's "stats" third, with Histogram and Report.
//
// A call is one RPC (Get, BatchGet of several keys, or Invalidate). Its latency goes into the
// latency histogram once and it counts once under its CallKind; each of its keys ("items") adds
// one to the count of its status code and, when OK, of its Source (an Invalidate has none). A
// failed BatchGet RPC gives all its keys the RPC's code.
// Besides the run's totals the recorder keeps an interval view that TakeInterval() returns and
// resets, for the once-a-second progress line.
//
// Thread-safety: thread-safe (one absl::Mutex; Record() holds it for a few hundred ns).
//
// Usage:
//   LatencyRecorder recorder;
//   recorder.Record(latency, {{absl::StatusCode::kOk, Source::kHit}});
//   RunTotals totals = recorder.Totals();
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_RECORDER_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_RECORDER_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/loadgen/call_kind.h"
#include "client/loadgen/histogram.h"

namespace flightcache::loadgen {

// Mirrors flightcache.v1.Source (same numbers), kept free of the generated proto code.
enum class Source {
  kUnspecified = 0,
  kHit = 1,
  kLoaded = 2,
  kCoalesced = 3,
  kStale = 4,
  kFleet = 5,
};
inline constexpr int kSourceCount = 6;
// absl::StatusCode and grpc::StatusCode share numbering 0..16.
inline constexpr int kStatusCodeCount = 17;

absl::string_view SourceName(Source source);  // "HIT", "LOADED", ...

// The outcome for one key of a call.
struct ItemResult {
  absl::StatusCode code = absl::StatusCode::kOk;
  Source source = Source::kUnspecified;
};

// A key's outcome counts as an error unless it is OK or NOT_FOUND: NOT_FOUND is a valid answer
// from the origin ("this key does not exist"), not a failure of the cache.
bool IsError(absl::StatusCode code);

struct RunTotals {
  int64_t calls = 0;                            // RPCs finished
  int64_t items = 0;                            // keys answered (== calls without --batch)
  std::array<int64_t, kCallKindCount> kinds{};  // calls by CallKind
  std::array<int64_t, kStatusCodeCount> codes{};
  std::array<int64_t, kSourceCount> sources{};
  Histogram latency_ns;

  int64_t errors() const;
  double error_rate() const;  // errors / items; 0 when nothing finished
};

class LatencyRecorder final {
 public:
  LatencyRecorder() = default;
  LatencyRecorder(const LatencyRecorder&) = delete;
  LatencyRecorder& operator=(const LatencyRecorder&) = delete;

  void Record(absl::Duration latency, absl::Span<const ItemResult> items,
              CallKind kind = CallKind::kGet);

  RunTotals Totals() const;
  // What was recorded since the previous call (or since construction), then starts a new one.
  RunTotals TakeInterval();

 private:
  static void Add(RunTotals& totals, uint64_t latency_ns, absl::Span<const ItemResult> items,
                  CallKind kind);

  mutable absl::Mutex mu_;
  RunTotals total_ ABSL_GUARDED_BY(mu_);
  RunTotals interval_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_RECORDER_H_
