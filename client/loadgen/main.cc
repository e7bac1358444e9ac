// flightcache-loadgen: drives a flightcache server and reports latency, throughput and what the
// cache saved. This file only maps flags onto options, validates, wires the parts and waits.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/loadgen/grpc_target.h"
#include "client/loadgen/hdr_log.h"
#include "client/loadgen/html_report.h"
#include "client/loadgen/recorder.h"
#include "client/loadgen/report.h"
#include "client/loadgen/run_summary.h"
#include "client/loadgen/runner.h"
#include "client/loadgen/workload.h"
#include "flightcache/support/file_util.h"
#include "flightcache/support/flags.h"
#include "flightcache/support/signal_watcher.h"
#include "flightcache/timer_queue.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "HOST:PORT of the flightcache server.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "How long to send (ms/s/m units). With --requests alone, the run has no time limit.");
ABSL_FLAG(int64_t, requests, 0, "Stop after this many calls (0: no limit).");
ABSL_FLAG(int, concurrency, 64, "Closed loop: calls in flight at any moment.");
ABSL_FLAG(double, rate, 0,
          "Open loop: calls per second, sent on schedule however slowly the server answers; "
          "latency counts from the scheduled send time. 0: closed loop.");
ABSL_FLAG(std::string, arrival, "fixed",
          "Open loop: 'fixed' (evenly spaced sends) or 'poisson' (exponential gaps).");
ABSL_FLAG(int64_t, max_inflight, 10000,
          "Open loop: calls in flight at most; later sends wait and their wait counts as latency.");
ABSL_FLAG(uint64_t, keys, 10000, "Number of distinct keys (key-0 .. key-N-1).");
ABSL_FLAG(std::string, distribution, "uniform",
          "Key popularity: 'uniform'; 'zipf:S' (rank r has weight 1/(r+1)^S); 'hot:F[:P]' (the "
          "first F of the keys get a share P of the requests; P defaults to 1-F); 'sequential' "
          "(keys 0..N-1 in order, then again: with --requests=N each key exactly once).");
ABSL_FLAG(std::string, key_prefix, "key-", "Prefix of every key name.");
ABSL_FLAG(int, batch, 1,
          "Keys per BatchGet call. Above 1 without --batch-share, every call (but the "
          "--invalidate-share) is a BatchGet.");
ABSL_FLAG(double, batch_share, 0,
          "Share of calls that are BatchGet of --batch keys (needs --batch >= 2); the rest, "
          "after --invalidate-share, are Get.");
ABSL_FLAG(double, invalidate_share, 0,
          "Share of calls that are Invalidate of one key (drawn like any other key).");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(1), "Deadline of each call.");
ABSL_FLAG(absl::Duration, max_deadline, absl::ZeroDuration(),
          "Instead of --deadline: each call's deadline drawn uniformly from (0, D], so callers "
          "give up at every stage of a load (0: off).");
ABSL_FLAG(std::string, scenario, "steady",
          "'steady' (closed or open loop) or 'herd' (--herd-size callers ask for one cold key at "
          "the same instant, --waves times, with fresh keys).");
ABSL_FLAG(int, herd_size, 100, "Herd: callers per wave.");
ABSL_FLAG(int, waves, 5, "Herd: number of waves.");
ABSL_FLAG(std::string, herd_nonce, "",
          "Herd: names the waves' keys (default: new ones every run). Loadgens given the same "
          "nonce ask for the same key in each wave, e.g. one herd spread over several servers.");
ABSL_FLAG(std::string, json, "", "Also write the report as JSON to this file ('-': stdout).");
ABSL_FLAG(std::string, report, "",
          "Also write an HTML report to this file: one self-contained page (inline SVG plots, "
          "no script) with the latency percentiles, throughput and latency per second, status "
          "codes over time, the server's savings and the run's configuration. With --compare: "
          "the two runs overlaid.");
ABSL_FLAG(std::string, hdr_log, "",
          "Also write the latency histogram of each second to this file in HdrHistogram's "
          "interval log format (values in ns; HistogramLogProcessor and the HdrHistogram "
          "plotters read it).");
ABSL_FLAG(std::string, plot_dir, "",
          "Also write the report's plots to this directory as standalone SVG files "
          "(latency-percentiles.svg, throughput.svg, latency-over-time.svg, status-codes.svg).");
ABSL_FLAG(bool, compare, false,
          "Compare two runs instead of running: flightcache-loadgen --compare A.json B.json "
          "[--report=FILE.html] [--plot-dir=DIR], where A and B are --json reports. Prints each "
          "headline figure of both and B/A.");
ABSL_FLAG(double, max_error_rate, 1.0,
          "Exit 1 when the share of failed keys (any code but OK and NOT_FOUND) exceeds this.");
ABSL_FLAG(int, channels, 1, "gRPC channels (TCP connections) to spread calls over.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(5), "How long to wait for the target.");
ABSL_FLAG(std::string, progress, "auto",
          "A progress line every second on stderr: 'auto' (when stderr is a terminal), 'on', "
          "'off'.");
ABSL_FLAG(uint64_t, seed, 0, "Random seed for keys and arrivals (0: from the clock).");

namespace flightcache::loadgen {
namespace {

constexpr char kUsage[] =
    "flightcache-loadgen: drive a flightcache server and report what it saved.\n"
    "\n"
    "  flightcache-loadgen --target=HOST:PORT --duration=10s --concurrency=64 --keys=N\n"
    "      --distribution=uniform|zipf:S|hot:F|sequential --deadline=D [--rate=N] [--batch=N] "
    "[--json=F]\n"
    "      [--invalidate-share=F] [--batch-share=F] [--max-deadline=D]\n"
    "  flightcache-loadgen --scenario=herd --herd-size=N --waves=W [--herd-nonce=S]\n"
    "      [--report=F.html] [--hdr-log=F.hlog] [--plot-dir=DIR]\n"
    "  flightcache-loadgen --compare A.json B.json [--report=F.html] [--plot-dir=DIR]\n"
    "\n"
    "Closed loop by default; --rate makes it open loop, with latency measured from each call's\n"
    "scheduled send time (no coordinated omission). A mixed workload sends a share of Invalidate\n"
    "and BatchGet calls among the Gets, and --max-deadline gives each call a random deadline.\n"
    "The report gives calls (by kind when mixed), throughput, every\n"
    "status code's count, latency p50/p90/p99/p99.9/max (histogram, <=1% relative error), and the\n"
    "server's Stats deltas: hit ratio, coalescing ratio, origin fetches per request, hedges.\n"
    "SIGINT/SIGTERM end the run early and still print the report.\n"
    "--report writes the same as an HTML page with plots; --compare overlays two --json runs.\n"
    "\n"
    "Exit codes: 0 run finished within --max-error-rate; 1 error rate above --max-error-rate;\n"
    "2 bad flag or value, or a --compare input that is not a loadgen JSON report of this\n"
    "version with calls; 3 target unreachable or report file not writable.";

struct Config {
  GrpcTargetOptions target;
  WorkloadOptions workload;
  RunnerOptions runner;
  std::string json_path;
  std::string report_path;
  std::string hdr_log_path;
  std::string plot_dir;
  double max_error_rate = 1.0;
  bool progress = false;
};

// Maps the flags onto the options structs; a bad value exits 2 naming the flag.
Config ConfigFromFlags() {
  Config c;
  c.target.target = absl::GetFlag(FLAGS_target);
  c.target.channels = absl::GetFlag(FLAGS_channels);
  c.target.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  if (c.target.target.empty()) support::ExitUsageError("--target must not be empty");
  absl::StatusOr<ClientChannelSecurity> security = ClientChannelSecurityFromFlags();
  if (!security.ok()) support::ExitUsageError(security.status().message());
  c.target.security = *std::move(security);
  if (c.target.channels < 1 || c.target.channels > 64) {
    support::ExitUsageError("--channels must be in [1, 64]");
  }

  absl::StatusOr<KeyDistribution> distribution =
      KeyDistribution::Parse(absl::GetFlag(FLAGS_distribution));
  if (!distribution.ok()) {
    support::ExitUsageError(absl::StrCat("--distribution: ", distribution.status().message()));
  }
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  c.workload.num_keys = absl::GetFlag(FLAGS_keys);
  c.workload.distribution = *distribution;
  c.workload.batch_size = absl::GetFlag(FLAGS_batch);
  c.workload.invalidate_share = absl::GetFlag(FLAGS_invalidate_share);
  // Without --batch-share, --batch=N alone keeps its old meaning: every Get becomes a BatchGet.
  c.workload.batch_share =
      support::WasFlagGiven("batch_share")
          ? absl::GetFlag(FLAGS_batch_share)
          : (c.workload.batch_size > 1 ? std::max(0.0, 1 - c.workload.invalidate_share) : 0.0);
  c.workload.key_prefix = absl::GetFlag(FLAGS_key_prefix);
  c.workload.seed = seed;
  c.workload.herd_nonce = absl::GetFlag(FLAGS_herd_nonce);
  if (absl::Status s = c.workload.Validate(); !s.ok()) support::ExitUsageError(s.message());

  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  const double rate = absl::GetFlag(FLAGS_rate);
  if (scenario == "herd") {
    c.runner.mode = LoopMode::kHerd;
    if (c.workload.batch_size != 1) support::ExitUsageError("--batch cannot be used with herd");
    for (const auto& [flag, name] : {std::pair{"batch_share", "--batch-share"},
                                     {"invalidate_share", "--invalidate-share"},
                                     {"max_deadline", "--max-deadline"}}) {
      if (support::WasFlagGiven(flag)) {
        support::ExitUsageError(absl::StrCat(name, " cannot be used with herd"));
      }
    }
    if (rate != 0) support::ExitUsageError("--rate cannot be used with --scenario=herd");
  } else if (scenario == "steady") {
    c.runner.mode = rate == 0 ? LoopMode::kClosed : LoopMode::kOpen;
  } else {
    support::ExitUsageError(
        absl::StrCat("--scenario: unknown scenario '", scenario, "' (expected steady or herd)"));
  }
  const std::string arrival = absl::GetFlag(FLAGS_arrival);
  if (arrival != "fixed" && arrival != "poisson") {
    support::ExitUsageError("--arrival must be 'fixed' or 'poisson'");
  }
  c.runner.concurrency = absl::GetFlag(FLAGS_concurrency);
  c.runner.rate = rate;
  c.runner.poisson_arrivals = arrival == "poisson";
  c.runner.max_inflight = absl::GetFlag(FLAGS_max_inflight);
  c.runner.duration = absl::GetFlag(FLAGS_duration);
  c.runner.max_requests = absl::GetFlag(FLAGS_requests);
  c.runner.deadline = absl::GetFlag(FLAGS_deadline);
  c.runner.max_deadline = absl::GetFlag(FLAGS_max_deadline);
  if (support::WasFlagGiven("deadline") && support::WasFlagGiven("max_deadline")) {
    support::ExitUsageError("--deadline and --max-deadline exclude each other");
  }
  c.runner.herd_size = absl::GetFlag(FLAGS_herd_size);
  c.runner.waves = absl::GetFlag(FLAGS_waves);
  c.runner.seed = seed ^ 0x9e3779b97f4a7c15ULL;
  if (rate < 0) support::ExitUsageError("--rate must be >= 0");
  if (c.runner.max_requests > 0) {
    // "--requests=N" alone means "exactly N calls", not "N calls or 10 s, whichever is first".
    if (!support::WasFlagGiven("duration")) c.runner.duration = absl::InfiniteDuration();
  }
  if (absl::Status s = c.runner.Validate(); !s.ok()) support::ExitUsageError(s.message());

  c.json_path = absl::GetFlag(FLAGS_json);
  c.report_path = absl::GetFlag(FLAGS_report);
  c.hdr_log_path = absl::GetFlag(FLAGS_hdr_log);
  c.plot_dir = absl::GetFlag(FLAGS_plot_dir);
  c.max_error_rate = absl::GetFlag(FLAGS_max_error_rate);
  if (!(c.max_error_rate >= 0 && c.max_error_rate <= 1)) {
    support::ExitUsageError("--max-error-rate must be in [0, 1]");
  }
  const std::string progress = absl::GetFlag(FLAGS_progress);
  if (progress == "auto") {
    c.progress = isatty(STDERR_FILENO) != 0;
  } else if (progress == "on" || progress == "off") {
    c.progress = progress == "on";
  } else {
    support::ExitUsageError("--progress must be 'auto', 'on' or 'off'");
  }
  return c;
}

std::string ModeName(LoopMode mode) {
  switch (mode) {
    case LoopMode::kClosed:
      return "closed";
    case LoopMode::kOpen:
      return "open";
    case LoopMode::kHerd:
      return "herd";
  }
  return "?";
}

// Writes one output file ('-': stdout); false, after one line on stderr, when it cannot.
bool WriteOutput(const std::string& path, absl::string_view contents) {
  if (path == "-") {
    std::cout << contents << std::flush;
    return true;
  }
  if (absl::Status s = support::WriteFileAtomically(path, contents); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", support::ProgramName().c_str(),
                 std::string(s.message()).c_str());
    return false;
  }
  return true;
}

bool WritePlots(const std::string& dir, const std::vector<LabeledRun>& runs) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    std::fprintf(stderr, "%s: --plot-dir: cannot create %s: %s\n", support::ProgramName().c_str(),
                 dir.c_str(), error.message().c_str());
    return false;
  }
  for (const auto& [stem, svg] : RenderPlots(runs)) {
    if (!WriteOutput(absl::StrCat(dir, "/", stem, ".svg"), svg)) return false;
  }
  return true;
}

// The run's configuration for the JSON and HTML reports: the flags that shape the load.
std::vector<std::pair<std::string, std::string>> Settings(LoopMode mode) {
  std::vector<std::string> names = {"scenario"};
  if (mode == LoopMode::kHerd) {
    names.insert(names.end(), {"herd_size", "waves"});
  } else {
    if (mode == LoopMode::kOpen) {
      names.insert(names.end(), {"rate", "arrival", "max_inflight"});
    } else {
      names.emplace_back("concurrency");
    }
    names.insert(names.end(), {"duration", "requests", "keys", "distribution", "batch",
                               "batch_share", "invalidate_share"});
  }
  names.insert(names.end(), {support::WasFlagGiven("max_deadline") ? "max_deadline" : "deadline",
                             "channels", "tls", "seed"});
  std::vector<std::pair<std::string, std::string>> settings;
  for (const std::string& name : names) {
    if (const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name); flag != nullptr) {
      settings.emplace_back(support::DashedFlagName(name), flag->CurrentValue());
    }
  }
  return settings;
}

// --compare A.json B.json: any input that is not a report of this version with calls is a
// usage error (exit 2) in one line.
int Compare(const std::vector<std::string>& files) {
  if (files.size() != 2) {
    support::ExitUsageError(
        absl::StrCat("--compare takes two JSON reports (A.json B.json), got ", files.size()));
  }
  for (const char* flag : {"json", "hdr_log"}) {
    if (support::WasFlagGiven(flag)) {
      support::ExitUsageError(
          absl::StrCat("--", support::DashedFlagName(flag), " cannot be used with --compare"));
    }
  }
  std::vector<LabeledRun> runs;
  for (const std::string& file : files) {
    absl::StatusOr<RunSummary> run = ReadRunSummaryFile(file);
    if (!run.ok()) {
      std::fprintf(stderr, "%s: --compare: %s\n", support::ProgramName().c_str(),
                   std::string(run.status().message()).c_str());
      return support::kExitUsage;
    }
    runs.push_back({std::filesystem::path(file).stem().string(), *std::move(run)});
  }
  if (runs[0].label == runs[1].label) {  // a/run.json b/run.json: the paths tell them apart
    runs[0].label = files[0];
    runs[1].label = files[1];
  }
  std::cout << FormatCompareText(runs[0], runs[1]) << std::flush;
  const std::string report_path = absl::GetFlag(FLAGS_report);
  const std::string plot_dir = absl::GetFlag(FLAGS_plot_dir);
  bool written =
      report_path.empty() || WriteOutput(report_path, RenderCompareReport(runs[0], runs[1]));
  written = written && (plot_dir.empty() || WritePlots(plot_dir, runs));
  return written ? support::kExitOk : support::kExitRuntime;
}

// The HTML report and plots of a finished run, read back from its JSON so that every output
// shows the same figures. False when a file cannot be written (or the run had no calls).
bool WriteRunReports(const Config& config, const std::string& json) {
  if (config.report_path.empty() && config.plot_dir.empty()) return true;
  absl::StatusOr<RunSummary> run = ParseRunSummary(json);
  if (!run.ok()) {
    std::fprintf(stderr, "%s: no HTML report or plots: %s\n", support::ProgramName().c_str(),
                 std::string(run.status().message()).c_str());
    return false;
  }
  if (!config.report_path.empty() && !WriteOutput(config.report_path, RenderRunReport(*run))) {
    return false;
  }
  return config.plot_dir.empty() || WritePlots(config.plot_dir, {{"run", *std::move(run)}});
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<std::string> files = support::ParseFlagsOrExit(argc, argv);
  if (absl::GetFlag(FLAGS_compare)) return Compare(files);
  if (!files.empty()) {
    support::ExitUsageError(
        absl::StrCat("unexpected argument '", files.front(), "' (only --compare takes files)"));
  }
  const Config config = ConfigFromFlags();

  // Before any gRPC thread exists, so that every thread inherits the blocked signal mask.
  absl::Mutex runner_mu;
  Runner* active_runner = nullptr;  // guarded by runner_mu
  int signals_seen = 0;             // guarded by runner_mu
  support::SignalWatcher signals([&](int) {
    absl::MutexLock lock(&runner_mu);
    if (++signals_seen > 1) std::_Exit(130);  // a second ^C: the user really wants out
    if (active_runner != nullptr) active_runner->Stop();
    std::fprintf(stderr, "stopping: waiting for calls in flight (again to abort)\n");
  });

  absl::StatusOr<std::unique_ptr<GrpcTarget>> target = GrpcTarget::Connect(config.target);
  if (!target.ok()) {
    std::fprintf(stderr, "%s: %s\n", support::ProgramName().c_str(),
                 std::string(target.status().message()).c_str());
    return support::kExitRuntime;
  }
  const absl::StatusOr<ServerStats> before = (*target)->FetchStats(absl::Seconds(5));

  Workload workload(config.workload);
  LatencyRecorder recorder;
  ThreadTimerQueue timers;
  Runner runner(config.runner, workload, **target, recorder, timers);
  {
    absl::MutexLock lock(&runner_mu);
    active_runner = &runner;
    if (signals_seen > 0) runner.Stop();
  }
  const absl::Time run_start = absl::Now();
  runner.Start();

  // Once a second: the interval's summary for the timeline, its histogram for --hdr-log, and
  // the progress line when asked for. The last, partial interval is taken after the run, so
  // that the intervals add up to the totals.
  std::vector<IntervalSummary> timeline;
  std::optional<HdrLogWriter> hdr_log;
  if (!config.hdr_log_path.empty()) hdr_log.emplace(run_start);
  absl::Status hdr_status;
  absl::Time last = run_start;
  auto take_interval = [&](absl::Time now, bool print_progress) {
    const RunTotals interval = recorder.TakeInterval();
    const double start_s = absl::ToDoubleSeconds(last - run_start);
    const double length_s = absl::ToDoubleSeconds(now - last);
    timeline.push_back(SummarizeInterval(start_s, length_s, interval));
    if (hdr_log.has_value() && hdr_status.ok()) {
      hdr_status = hdr_log->AddInterval(start_s, length_s, interval.latency_ns);
    }
    if (print_progress) {
      const std::string line = FormatProgress(now - run_start, now - last, interval,
                                              recorder.Totals(), runner.inflight());
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    last = now;
  };
  absl::Notification run_over;
  std::thread ticker([&] {
    while (!run_over.WaitForNotificationWithTimeout(absl::Seconds(1))) {
      take_interval(absl::Now(), config.progress);
    }
  });
  const RunResult result = runner.Wait();
  run_over.Notify();
  ticker.join();
  {
    absl::MutexLock lock(&runner_mu);
    active_runner = nullptr;
  }
  const absl::Time run_end = absl::Now();
  if (run_end > last) take_interval(run_end, /*print_progress=*/false);
  const absl::StatusOr<ServerStats> after = (*target)->FetchStats(absl::Seconds(5));

  Report report;
  report.target = config.target.target;
  report.mode = ModeName(config.runner.mode);
  if (config.runner.mode != LoopMode::kHerd) {
    report.distribution = config.workload.distribution.ToString();
  }
  report.elapsed = result.elapsed;
  report.totals = recorder.Totals();
  report.late_sends = result.late_sends;
  report.max_send_lag = result.max_send_lag;
  report.herd_size = config.runner.herd_size;
  report.waves = config.runner.waves;
  report.max_error_rate = config.max_error_rate;
  if (config.runner.mode == LoopMode::kOpen) report.intended_rate = config.runner.rate;
  report.settings = Settings(config.runner.mode);
  report.timeline = std::move(timeline);
  if (before.ok() && after.ok()) {
    report.server_delta = Delta(*before, *after);
  } else {
    report.server_stats_error =
        std::string((before.ok() ? after.status() : before.status()).message());
  }

  std::cout << FormatText(report) << std::flush;
  int exit_code = report.error_rate_exceeded() ? support::kExitFailure : support::kExitOk;
  const std::string json = FormatJson(report);
  bool written = config.json_path.empty() || WriteOutput(config.json_path, json);
  written = WriteRunReports(config, json) && written;
  if (hdr_log.has_value()) {
    if (!hdr_status.ok()) {
      std::fprintf(stderr, "%s: --hdr-log: %s\n", support::ProgramName().c_str(),
                   std::string(hdr_status.message()).c_str());
      written = false;
    } else {
      written = WriteOutput(config.hdr_log_path, hdr_log->contents()) && written;
    }
  }
  if (!written) exit_code = support::kExitRuntime;
  if (report.error_rate_exceeded()) {
    std::fprintf(stderr, "%s: error rate %.4f exceeds --max-error-rate=%.4f\n",
                 support::ProgramName().c_str(), report.totals.error_rate(), config.max_error_rate);
  }
  return exit_code;
}

}  // namespace
}  // namespace flightcache::loadgen

int main(int argc, char** argv) { return flightcache::loadgen::Main(argc, argv); }
