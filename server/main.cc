// flightcache-server: parses flags, validates, raises its open-file limit, starts the Sidecar,
// waits for SIGTERM/SIGINT, drains and exits 0. Exit status 2: a bad flag or configuration
// (nothing was bound); 1: the server could not start (e.g. its address is in use), a second
// SIGTERM/SIGINT cut the drain short, or the gRPC listener failed (it accepts no connection any
// more, e.g. after running out of file descriptors: drained, then exit 1 so the orchestrator
// restarts the process).
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "server/flags.h"
#include "server/logging.h"
#include "server/open_file_limit.h"
#include "server/sidecar.h"

namespace {

// Prints a configuration error (naming the environment variable it came from, if it did) and
// returns the exit status for one.
int RefuseConfig(const flightcache::CommandLine& command_line, absl::string_view message) {
  std::fprintf(stderr, "flightcache-server: %s\n",
               flightcache::NameErrorSource(command_line, message).c_str());
  return 2;
}

const char* SignalName(int signal_number) {
  return signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
}

// Why the server stops: a signal, or a failed gRPC listener.
struct StopReason {
  int signal_number = 0;         // SIGTERM or SIGINT, or 0
  std::string listener_failure;  // gRPC's message, when the listener failed
};

// The first reason to stop wins; main waits for it. Thread-safe.
class StopRequest {
 public:
  // False if a stop was already requested.
  bool Request(StopReason reason) {
    absl::MutexLock lock(&mu_);
    if (reason_.has_value()) return false;
    reason_ = std::move(reason);
    return true;
  }

  StopReason Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::optional<StopReason>* reason) { return reason->has_value(); }, &reason_));
    return *reason_;
  }

 private:
  absl::Mutex mu_;
  std::optional<StopReason> reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil with mutex deadlock detection on: every absl::Mutex lock then updates a
  // process-wide graph behind one spinlock (about 2x the cost of a lock, and a point of
  // contention between threads). Our lock order is fixed and tested; skip the detector.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  using flightcache::CommandLine;
  absl::StatusOr<CommandLine> cl = flightcache::ParseServerCommandLine(argc, argv);
  if (!cl.ok()) {
    std::fprintf(stderr, "flightcache-server: %s\n", std::string(cl.status().message()).c_str());
    return 2;
  }
  if (cl->help) {
    std::fputs(flightcache::ServerUsage(argv[0]).c_str(), stdout);
    return 0;
  }
  if (cl->version) {
    std::puts("flightcache-server " FLIGHTCACHE_VERSION);
    return 0;
  }
  if (absl::Status s = cl->config.Validate(); !s.ok()) {
    return RefuseConfig(*cl, s.message());
  }
  // The fleet's password file is read here too, so --check-config catches an unreadable one.
  if (!cl->config.fleet.empty()) {
    if (absl::StatusOr<flightcache::RedisOptions> redis = cl->config.FleetRedisOptions();
        !redis.ok()) {
      return RefuseConfig(*cl, redis.status().message());
    }
  }
  // So is the admin token file.
  if (absl::StatusOr<flightcache::AdminGuard> admin = cl->config.MakeAdminGuard(); !admin.ok()) {
    return RefuseConfig(*cl, admin.status().message());
  }
  // And the TLS files: a key that is not the certificate's fails here, not at the first handshake.
  if (!cl->config.tls.cert_file.empty()) {
    if (absl::Status s = flightcache::TlsListenerCredentials::CheckFiles(cl->config.tls); !s.ok()) {
      return RefuseConfig(*cl, s.message());
    }
  }
  // And a grpcs:// origin's: a CA that does not parse, or a key that is not the certificate's,
  // fails here, not as UNAVAILABLE on every fetch.
  if (absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> origin_tls =
          cl->config.OriginTlsCredentials();
      !origin_tls.ok()) {
    return RefuseConfig(*cl, origin_tls.status().message());
  }
  if (cl->check_config) {
    std::printf("flightcache-server: configuration OK: %s\n", cl->config.Describe().c_str());
    return 0;
  }
  flightcache::InitLogging(cl->config.log_level, cl->config.log_format);
  // Every connection costs a descriptor, and gRPC's listener does not survive running out.
  spdlog::info("{}", flightcache::RaiseOpenFileLimit().Describe());

  // SIGTERM and SIGINT are blocked before any thread starts (threads inherit the mask) and taken
  // synchronously with sigwait below: no signal handler runs, so nothing async-signal-unsafe can.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Never destroyed: the signal thread and gRPC's threads may use it while the process exits.
  StopRequest& stop = *new StopRequest;
  // The first SIGTERM/SIGINT stops the server. A signal after a stop was requested ends the
  // process at once, as Ctrl-C pressed twice does: an operator who signals again does not want
  // to wait for the drain. The thread is never joined: the process ends it.
  std::thread([&stop, signals] {
    for (;;) {
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      if (stop.Request(StopReason{.signal_number = signal_number})) continue;
      // "while shutting down", not "again": the stop may have come from a failed listener.
      spdlog::warn(
          "received {} while shutting down: exiting now, without waiting for calls in "
          "flight",
          SignalName(signal_number));
      spdlog::default_logger()->flush();
      std::_Exit(1);
    }
  }).detach();
  // Installed before the listener exists, so no failure goes unseen.
  flightcache::SetGrpcListenerFailureHandler([&stop](absl::string_view message) {
    stop.Request(StopReason{.listener_failure = std::string(message)});
  });

  absl::StatusOr<std::unique_ptr<flightcache::Sidecar>> sidecar =
      flightcache::Sidecar::Start(cl->config);
  if (!sidecar.ok()) {
    spdlog::error("flightcache-server cannot start: {}", sidecar.status().ToString());
    return 1;
  }
  const StopReason reason = stop.Wait();
  if (!reason.listener_failure.empty()) {
    (*sidecar)->BeginDrain();
    spdlog::error(
        "the gRPC listener failed ({}) and accepts no more connections: health is NOT_SERVING; "
        "draining (drain timeout {}), then exiting 1 so that the server is restarted",
        reason.listener_failure, absl::FormatDuration(cl->config.drain_timeout));
  } else {
    spdlog::info("received {}: shutting down gracefully (drain timeout {})",
                 SignalName(reason.signal_number), absl::FormatDuration(cl->config.drain_timeout));
  }
  (*sidecar)->Shutdown();
  sidecar->reset();
  return reason.listener_failure.empty() ? 0 : 1;
}
