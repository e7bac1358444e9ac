// flightcache-server: parses flags, validates, starts the Sidecar, waits for SIGTERM/SIGINT,
// drains and exits 0. Exit status 2: a bad flag or configuration (nothing was bound); 1: the
// server could not start (e.g. its address is in use), or a second SIGTERM/SIGINT cut the drain
// short.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "server/flags.h"
#include "server/logging.h"
#include "server/sidecar.h"

namespace {

const char* SignalName(int signal_number) {
  return signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
}

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
    std::fprintf(stderr, "flightcache-server: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (cl->check_config) {
    std::printf("flightcache-server: configuration OK: %s\n", cl->config.Describe().c_str());
    return 0;
  }
  flightcache::InitLogging(cl->config.log_level, cl->config.log_format);

  // SIGTERM and SIGINT are blocked before any thread starts (threads inherit the mask) and taken
  // synchronously with sigwait below: no signal handler runs, so nothing async-signal-unsafe can.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<flightcache::Sidecar>> sidecar =
      flightcache::Sidecar::Start(cl->config);
  if (!sidecar.ok()) {
    spdlog::error("flightcache-server cannot start: {}", sidecar.status().ToString());
    return 1;
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("received {}: shutting down gracefully (drain timeout {})",
               SignalName(signal_number), absl::FormatDuration(cl->config.drain_timeout));
  // As with Ctrl-C pressed twice: an operator who signals again does not want to wait for the
  // drain. The thread is never joined: either it ends the process or the process ends it.
  std::thread([signals] {
    int again = 0;
    sigwait(&signals, &again);
    spdlog::warn("received {} again: exiting now, without waiting for calls in flight",
                 SignalName(again));
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }).detach();
  (*sidecar)->Shutdown();
  sidecar->reset();
  return 0;
}
