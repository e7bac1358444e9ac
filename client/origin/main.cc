// flightcache-origin: a demo/test origin implementing flightcache.v1.Origin with configurable
// latency, failures, overload and counters. This file only maps flags onto options, validates,
// wires the server and waits for SIGTERM/SIGINT.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/origin/origin_service.h"
#include "flightcache/sim/origin_model.h"
#include "flightcache/support/file_util.h"
#include "flightcache/support/flags.h"
#include "flightcache/support/json_writer.h"
#include "flightcache/support/signal_watcher.h"
#include "flightcache/timer_queue.h"
#include "server/grpc_listener.h"
#include "server/tls_listener.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50052",
          "HOST:PORT to serve flightcache.v1.Origin on; port 0 picks a free port.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound port (a number and a newline) to this file once serving.");
ABSL_FLAG(std::string, stats_file, "",
          "Keep the counters as one JSON object in this file, rewritten every --stats-interval "
          "and on exit.");
ABSL_FLAG(absl::Duration, stats_interval, absl::Seconds(1), "How often --stats-file is rewritten.");
ABSL_FLAG(absl::Duration, log_interval, absl::Seconds(10),
          "How often a counters line is logged to stderr (0: only on exit).");
ABSL_FLAG(std::string, latency, "fixed:5ms",
          "Fetch latency: fixed:D | jitter:D,J (D +/- uniform J) | uniform:MIN,MAX | "
          "lognormal:MEDIAN,SIGMA | bimodal:FAST,SLOW,P (e.g. bimodal:5ms,200ms,0.02 = 98% 5 ms, "
          "2% 200 ms) | keyed:FAST,SLOW,P (SLOW for the same share P of keys on every fetch).");
ABSL_FLAG(int64_t, value_bytes, 128,
          "Value size; a value is 'sim-value v=<version> key=<len>:<key>\\n' padded with '.' to "
          "this size (the server's sim:// origin answers the same).");
ABSL_FLAG(double, error_rate, 0, "Share of fetches that fail with UNAVAILABLE.");
ABSL_FLAG(double, not_found_rate, 0,
          "Share of keys that do not exist (NOT_FOUND), chosen by a stable hash of the key.");
ABSL_FLAG(int64_t, overload_threshold, 0,
          "Above this many fetches in flight, latency grows in proportion to the excess "
          "(0: never).");
ABSL_FLAG(double, overload_slope, 1.0,
          "Overload: latency x (1 + slope * (in_flight - threshold) / threshold).");
ABSL_FLAG(int64_t, reject_above, 0,
          "Answer RESOURCE_EXHAUSTED at once when this many fetches are in flight (0: never).");
ABSL_FLAG(absl::Duration, ttl, absl::ZeroDuration(),
          "TTL sent with each value as ttl_ms (0: let the server use its default TTL).");
ABSL_FLAG(uint64_t, seed, 1,
          "Random seed for latencies and injected errors (sim://'s seed=N: the same seed answers "
          "the same fetches alike).");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(5),
          "On SIGTERM/SIGINT, how long fetches in flight may take before they are cancelled.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "Serve over TLS with this certificate chain (PEM, leaf first; with --tls-key-file), "
          "for a sidecar's --origin=grpcs://. Re-read when it changes.");
ABSL_FLAG(std::string, tls_key_file, "", "The key of --tls-cert-file (PEM, unencrypted).");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "Require client certificates signed by these CAs (mTLS; PEM); needs --tls-cert-file.");

namespace flightcache::demo_origin {
namespace {

using sim::LatencyDistribution;
using sim::OriginCounters;
using sim::OriginModel;
using sim::OriginModelOptions;

constexpr char kUsage[] =
    "flightcache-origin: a demo/test origin (flightcache.v1.Origin) with configurable latency,\n"
    "failures, overload and counters.\n"
    "\n"
    "  flightcache-origin --listen=127.0.0.1:0 --port-file=/tmp/port --latency=fixed:20ms\n"
    "  flightcache-origin --tls-cert-file=origin.pem --tls-key-file=origin.key   (grpcs://)\n"
    "\n"
    "Each value fetch of a key bumps that key's version; the value encodes key and version.\n"
    "Counters (fetches, primary/hedge fetches, values, not_found, errors, rejected, cancelled,\n"
    "deadline_exceeded, in flight, peak in flight, keys) go to --stats-file, to the log every\n"
    "--log-interval, and on exit as the last line of stdout (JSON). The first stdout line is\n"
    "{\"event\":\"listening\",\"port\":N}. SIGTERM/SIGINT drain and exit 0.\n"
    "\n"
    "Exit codes: 0 clean shutdown; 2 bad flag or value; 3 cannot listen or write --port-file.";

void Log(const std::string& line) {
  const std::string stamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::LocalTimeZone());
  std::fprintf(stderr, "%s flightcache-origin: %s\n", stamp.c_str(), line.c_str());
}

std::string CountersJson(const OriginCounters& c, absl::string_view event) {
  support::JsonObjectWriter json;
  if (!event.empty()) json.Add("event", event);
  json.Add("fetches", c.fetches)
      .Add("primary_fetches", c.primary_fetches)
      .Add("hedge_fetches", c.hedge_fetches)
      .Add("values", c.values)
      .Add("not_found", c.not_found)
      .Add("errors", c.errors)
      .Add("rejected", c.rejected)
      .Add("cancelled", c.cancelled)
      .Add("deadline_exceeded", c.deadline_exceeded)
      .Add("inflight", c.inflight)
      .Add("peak_inflight", c.peak_inflight)
      .Add("keys", c.keys);
  return json.Build();
}

std::string CountersLine(const OriginCounters& c) {
  return absl::StrFormat(
      "fetches=%d (primary=%d hedge=%d) values=%d not_found=%d errors=%d rejected=%d "
      "cancelled=%d (deadline=%d) inflight=%d peak_inflight=%d keys=%d",
      c.fetches, c.primary_fetches, c.hedge_fetches, c.values, c.not_found, c.errors, c.rejected,
      c.cancelled, c.deadline_exceeded, c.inflight, c.peak_inflight, c.keys);
}

// --stats-file (if set) gets the counters as one JSON line, replaced atomically; a failed write
// is logged, not fatal.
void WriteStatsFile(const std::string& stats_file, const OriginCounters& counters) {
  if (stats_file.empty()) return;
  if (absl::Status s = support::WriteFileAtomically(stats_file, CountersJson(counters, "") + "\n");
      !s.ok()) {
    Log(std::string(s.message()));
  }
}

OriginModelOptions ModelOptionsFromFlags() {
  OriginModelOptions o;
  absl::StatusOr<LatencyDistribution> latency =
      LatencyDistribution::Parse(absl::GetFlag(FLAGS_latency));
  if (!latency.ok()) {
    support::ExitUsageError(absl::StrCat("--latency: ", latency.status().message()));
  }
  o.latency = *latency;
  o.value_bytes = absl::GetFlag(FLAGS_value_bytes);
  o.error_rate = absl::GetFlag(FLAGS_error_rate);
  o.not_found_rate = absl::GetFlag(FLAGS_not_found_rate);
  o.overload_threshold = absl::GetFlag(FLAGS_overload_threshold);
  o.overload_slope = absl::GetFlag(FLAGS_overload_slope);
  o.reject_above = absl::GetFlag(FLAGS_reject_above);
  o.ttl = absl::GetFlag(FLAGS_ttl);
  o.seed = absl::GetFlag(FLAGS_seed);
  // Exact per-key versions (and the distinct-keys counter): a demo origin's keys are few.
  o.version_slots = 0;
  if (absl::Status s = o.Validate([](absl::string_view option) {
        return absl::StrCat("--", support::DashedFlagName(option));
      });
      !s.ok()) {
    support::ExitUsageError(s.message());
  }
  return o;
}

// TLS from --tls-cert-file, --tls-key-file and --tls-client-ca-file (the sidecar's listener's
// watched credentials, server/tls_listener.h), or null for plaintext. Exits 2 on a bad file.
std::unique_ptr<TlsListenerCredentials> TlsFromFlags() {
  const TlsListenerFiles files{.cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                               .key_file = absl::GetFlag(FLAGS_tls_key_file),
                               .client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file)};
  if (files.cert_file.empty() && files.key_file.empty()) {
    if (!files.client_ca_file.empty()) {
      support::ExitUsageError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file");
    }
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> tls =
      TlsListenerCredentials::Start(files);
  if (!tls.ok()) support::ExitUsageError(tls.status().message());
  return *std::move(tls);
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  support::ParseFlagsWithoutArgumentsOrExit(argc, argv);
  const OriginModelOptions model_options = ModelOptionsFromFlags();
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  const std::string stats_file = absl::GetFlag(FLAGS_stats_file);
  const absl::Duration stats_interval = absl::GetFlag(FLAGS_stats_interval);
  const absl::Duration log_interval = absl::GetFlag(FLAGS_log_interval);
  const absl::Duration drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  if (listen.empty()) support::ExitUsageError("--listen must not be empty");
  if (stats_interval <= absl::ZeroDuration()) {
    support::ExitUsageError("--stats-interval must be > 0");
  }
  if (log_interval < absl::ZeroDuration()) support::ExitUsageError("--log-interval must be >= 0");
  if (drain_timeout < absl::ZeroDuration()) support::ExitUsageError("--drain-timeout must be >= 0");

  absl::Notification stop;
  support::SignalWatcher signals([&](int signal) {
    if (!stop.HasBeenNotified()) {
      Log(absl::StrCat("signal ", signal, ": draining"));
      stop.Notify();
    }
  });

  // Declared before the server so that they are destroyed after it: the reactors' timers live
  // here, and the TLS credentials' files.
  const std::unique_ptr<TlsListenerCredentials> tls = TlsFromFlags();
  ThreadTimerQueue timers;
  OriginModel model(model_options);
  OriginService service(model, timers);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  absl::StatusOr<GrpcServer> grpc_server =
      StartGrpcServer(builder, listen, tls != nullptr ? tls->credentials() : nullptr);
  if (!grpc_server.ok()) {
    std::fprintf(stderr, "%s: %s\n", support::ProgramName().c_str(),
                 std::string(grpc_server.status().message()).c_str());
    return support::kExitRuntime;
  }
  const std::unique_ptr<grpc::Server> server = std::move(grpc_server->server);
  const int port = grpc_server->port;
  const char* security = tls == nullptr                                    ? "plaintext"
                         : absl::GetFlag(FLAGS_tls_client_ca_file).empty() ? "TLS"
                                                                           : "mTLS";
  Log(absl::StrCat("serving flightcache.v1.Origin on ", listen, " (port ", port, ", ", security,
                   "), latency ", model_options.latency.ToString(), ", value_bytes ",
                   model_options.value_bytes, ", error_rate ", model_options.error_rate,
                   ", not_found_rate ", model_options.not_found_rate));
  std::cout << support::JsonObjectWriter().Add("event", "listening").Add("port", port).Build()
            << std::endl;
  if (!port_file.empty()) {
    if (absl::Status s = support::WriteFileAtomically(port_file, absl::StrCat(port, "\n"));
        !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", support::ProgramName().c_str(),
                   std::string(s.message()).c_str());
      server->Shutdown();
      return support::kExitRuntime;
    }
  }

  // Stats file and periodic log line, on a plain thread so that it is joined before the model
  // it reads is destroyed.
  std::thread reporter([&] {
    absl::Time next_log = absl::Now() + log_interval;
    while (!stop.WaitForNotificationWithTimeout(stats_interval)) {
      const OriginCounters counters = model.counters();
      WriteStatsFile(stats_file, counters);
      if (log_interval > absl::ZeroDuration() && absl::Now() >= next_log) {
        Log(CountersLine(counters));
        next_log = absl::Now() + log_interval;
      }
    }
  });

  stop.WaitForNotification();
  // Drain: health turns NOT_SERVING, new fetches fail at once, and the fetches in flight get up
  // to --drain-timeout to answer. Shutdown() is then called with a deadline already passed, so
  // whatever is left is cancelled (OnCancel finishes each reactor) and idle client connections
  // do not hold the exit up for the whole drain timeout.
  server->GetHealthCheckService()->SetServingStatus(false);
  service.StartDraining();
  const absl::Time drain_deadline = absl::Now() + drain_timeout;
  while (model.counters().inflight > 0 && absl::Now() < drain_deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  reporter.join();

  const OriginCounters counters = model.counters();
  WriteStatsFile(stats_file, counters);
  Log(absl::StrCat("exiting: ", CountersLine(counters)));
  std::cout << CountersJson(counters, "exit") << std::endl;
  return support::kExitOk;
}

}  // namespace
}  // namespace flightcache::demo_origin

int main(int argc, char** argv) { return flightcache::demo_origin::Main(argc, argv); }
