// Report: what a load run measured, as text for people and JSON for machines — the last part of
// the loadgen's "stats" third.
//
// ServerStats mirrors flightcache.v1.StatsResponse without the generated code. The run takes one
// snapshot before and one after; Delta() subtracts the counters (gauges such as loads_inflight
// and entries keep the "after" value), and Savings() derives what the spec asks the report to
// show: hit ratio, coalescing ratio, origin fetches per request and hedges. The deltas cover
// the whole server, so other clients running at the same time are included.
//
// Thread-safety: plain values and pure functions.
//
// Usage:
//   Report report{.mode = "closed", .elapsed = t, .totals = recorder.Totals()};
//   report.server_delta = Delta(before, after);
//   std::cout << FormatText(report);
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_REPORT_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_REPORT_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "client/loadgen/recorder.h"

namespace flightcache::loadgen {

struct ServerStats {
  int64_t requests = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t coalesced = 0;
  int64_t loads_started = 0;
  int64_t loads_succeeded = 0;
  int64_t loads_failed = 0;
  int64_t loads_cancelled = 0;
  int64_t origin_fetches = 0;
  int64_t hedges_sent = 0;
  int64_t hedges_won = 0;
  int64_t loads_inflight = 0;  // gauge
  int64_t loads_queued = 0;    // gauge
  int64_t entries = 0;         // gauge
  int64_t bytes = 0;           // gauge
  int64_t evictions = 0;
  int64_t negative_hits = 0;
  int64_t stale_served = 0;
  int64_t refreshes_started = 0;
};

ServerStats Delta(const ServerStats& before, const ServerStats& after);

struct ServerSavings {
  double hit_ratio = 0;                   // (hits + negative_hits) / requests
  double coalescing_ratio = 0;            // coalesced / misses: misses that joined a load
  double origin_fetches_per_request = 0;  // origin_fetches / requests (hedges included)
  int64_t hedges_sent = 0;
  int64_t hedges_won = 0;
};

ServerSavings Savings(const ServerStats& delta);

// One interval (about a second) of the run, for the report's timeline.
struct IntervalSummary {
  double start_s = 0;  // since the run started
  double length_s = 0;
  int64_t calls = 0;
  uint64_t p50_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t max_ns = 0;
  std::array<int64_t, kStatusCodeCount> codes{};  // keys by status code
};

IntervalSummary SummarizeInterval(double start_s, double length_s, const RunTotals& interval);

// The JSON report's format: "schema" names it, "schema_version" grows when fields change
// meaning (--compare reads only its own version).
inline constexpr char kJsonSchema[] = "flightcache-loadgen-report";
inline constexpr int kJsonSchemaVersion = 2;

// The quantiles of the latency curve in the JSON and HTML reports: 0, then ten a decade on the
// "nines" scale (1 - 10^(-k/10)) as far as `count` values resolve them, then 1 (the max).
std::vector<double> CurveQuantiles(uint64_t count);

struct Report {
  std::string target;
  std::string mode;          // "closed", "open" or "herd"
  std::string distribution;  // as given on the command line
  absl::Duration elapsed;    // from the first send to the last answer
  RunTotals totals;
  // Open loop: sends that left more than 1 ms after their scheduled time (the in-flight cap or
  // a slow machine held them back); their latency still counts from the scheduled time.
  int64_t late_sends = 0;
  absl::Duration max_send_lag;
  // Herd scenario.
  int herd_size = 0;
  int waves = 0;
  std::optional<ServerStats> server_delta;
  std::string server_stats_error;  // why server_delta is missing
  double max_error_rate = 1.0;
  double intended_rate = 0;  // open loop: the --rate asked for (calls/s)
  // The run's configuration as flag=value pairs, recorded in the JSON and HTML reports.
  std::vector<std::pair<std::string, std::string>> settings;
  std::vector<IntervalSummary> timeline;  // one entry per second of the run

  double throughput() const;  // calls per second
  bool error_rate_exceeded() const { return totals.error_rate() > max_error_rate; }
};

std::string FormatText(const Report& report);
std::string FormatJson(const Report& report);

// One line for the progress display: elapsed, calls/s in the interval, errors, p50/p99, in flight.
std::string FormatProgress(absl::Duration elapsed, absl::Duration interval,
                           const RunTotals& interval_totals, const RunTotals& run_totals,
                           int64_t inflight);

// "1.23ms", "850us", "2.5s": three significant digits for latencies in reports.
std::string FormatLatency(uint64_t ns);

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_REPORT_H_
