// The loadgen's HTML report (--report) and comparison (--compare): one self-contained page,
// inline CSS and SVG, no script and nothing fetched, readable offline.
//
// Sections, each a <section id=...>: "latency" (the percentile curve on a nines axis and the
// headline percentiles), "throughput" (calls per second over the run, with the intended rate
// of an open-loop run), "latency-over-time" (p50 and p99 per second), "status" (status codes
// over time and in total), "savings" (the server's Stats deltas), "configuration" (the run's
// settings). A comparison overlays two runs in each plot (the second dashed) and adds "ratios":
// each headline figure of both runs and B/A.
//
// Thread-safety: pure functions.
//
// Usage:
//   std::string html = RenderRunReport(run);
//   std::string html = RenderCompareReport({"no hedging", a}, {"hedging", b});
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_HTML_REPORT_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_HTML_REPORT_H_

#include <string>
#include <utility>
#include <vector>

#include "client/loadgen/run_summary.h"

namespace flightcache::loadgen {

struct LabeledRun {
  std::string label;  // e.g. the JSON file's name
  RunSummary run;
};

std::string RenderRunReport(const RunSummary& run);
std::string RenderCompareReport(const LabeledRun& a, const LabeledRun& b);

// The plots of one run or an overlay of several, each a standalone SVG document, as
// (file stem, SVG): "latency-percentiles", "throughput", "latency-over-time", "status-codes".
std::vector<std::pair<std::string, std::string>> RenderPlots(const std::vector<LabeledRun>& runs);

// The comparison's ratio table as text, for stdout.
std::string FormatCompareText(const LabeledRun& a, const LabeledRun& b);

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_HTML_REPORT_H_
