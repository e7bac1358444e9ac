// RunSummary: what the HTML report and --compare need of one load run, read back from the JSON
// report (FormatJson). Both the single-run report and the comparison go through this one reader,
// so they show the same figures as the JSON file.
//
// Bad input is an error value, never a crash: text that is not JSON, JSON that is not a loadgen
// report, another schema version, a run without calls, fields of the wrong type.
//
// Thread-safety: plain values and pure functions.
//
// Usage:
//   absl::StatusOr<RunSummary> run = ReadRunSummaryFile("a.json");
//   if (!run.ok()) { print run.status().message(); exit 2; }
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_RUN_SUMMARY_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_RUN_SUMMARY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flightcache::loadgen {

struct RunSecond {
  double start_s = 0;
  double length_s = 0;
  double calls = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  std::vector<std::pair<std::string, double>> codes;  // status code name, keys
};

struct ServerFigures {
  double requests = 0;
  double hit_ratio = 0;
  double coalescing_ratio = 0;
  double origin_fetches_per_request = 0;
  double origin_fetches = 0;
  double hedges_sent = 0;
  double hedges_won = 0;
  double stale_served = 0;
};

struct RunSummary {
  std::string target;
  std::string mode;
  std::string distribution;
  double elapsed_s = 0;
  double calls = 0;
  double keys = 0;
  double throughput_rps = 0;
  double intended_rate_rps = 0;  // open loop only; 0 otherwise
  double errors = 0;
  double error_rate = 0;
  // Status code name and keys, in code order (OK first).
  std::vector<std::pair<std::string, double>> status_codes;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  double max_ms = 0;
  double mean_ms = 0;
  std::vector<std::pair<double, double>> latency_curve;  // quantile, ms
  std::vector<RunSecond> timeline;
  std::optional<ServerFigures> server;
  std::string server_stats_error;
  std::vector<std::pair<std::string, std::string>> settings;
};

// Parses a JSON report. Errors name what is wrong in one line (without the file name).
absl::StatusOr<RunSummary> ParseRunSummary(absl::string_view json);

// Reads and parses `path`; errors start with the path.
absl::StatusOr<RunSummary> ReadRunSummaryFile(const std::string& path);

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_RUN_SUMMARY_H_
