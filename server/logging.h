// Logging for flightcache-server: spdlog set up once, and a rate limit for repetitive events.
//
// InitLogging() makes spdlog's default logger write to stderr, either as text lines or as one
// JSON object per line ({"ts":...,"level":...,"msg":...}) for log collectors. Everything in the
// server logs through spdlog's default logger, gRPC's own log lines included.
//
// Logs are for events a person reads (start-up, shutdown, origin trouble); anything an operator
// graphs is a metric instead (metrics.h). An origin that fails fails for many requests at once,
// so OriginFailureLog writes at most one line per interval and counts the lines it held back.
//
// Thread-safety: InitLogging() is not thread-safe (call it once, early, from main); the rest is.
//
// Usage:
//   InitLogging(config.log_level, config.log_format);
//   spdlog::info("listening on {}", address);
#ifndef FLIGHTCACHE_SERVER_LOGGING_H_
#define FLIGHTCACHE_SERVER_LOGGING_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "server/config.h"

namespace flightcache {

void InitLogging(LogLevel level, LogFormat format);

// gRPC 1.51's TCP listener gives up for good when accept4() fails with anything but EAGAIN or
// EINTR (EMFILE: out of file descriptors): it logs "Failed accept4: <error>" and never accepts
// again, even after descriptors are freed. gRPC offers no other signal of it, so the log line is
// the signal: after InitLogging, `handler` is called with the message (on the gRPC thread that
// logged it, after the line is written) each time gRPC logs such a failure. It must not block.
// One handler per process; a later call replaces it.
inline constexpr char kGrpcAcceptFailurePrefix[] = "Failed accept4";
void SetGrpcListenerFailureHandler(std::function<void(absl::string_view message)> handler);

// The JSON line InitLogging's json format writes for one message (without the newline); exposed
// for tests. `ts` is wall-clock time.
std::string FormatJsonLogLine(absl::Time ts, absl::string_view level, absl::string_view message);

// Admits at most one event per `interval`. Thread-safe.
class LogRateLimiter final {
 public:
  explicit LogRateLimiter(absl::Duration interval, const Clock& clock = MonotonicClock::Get())
      : interval_(interval), clock_(clock) {}
  LogRateLimiter(const LogRateLimiter&) = delete;
  LogRateLimiter& operator=(const LogRateLimiter&) = delete;

  // If this event may be logged now: the number of events suppressed since the last admitted
  // one. Otherwise nothing (and the event is counted as suppressed).
  std::optional<int64_t> Admit();

 private:
  const absl::Duration interval_;
  const Clock& clock_;
  absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

// Logs failed origin fetches (not NOT_FOUND, not our own cancellations) as warnings, at most one
// line per second, naming the origin, the attempt and the error. Thread-safe.
class OriginFailureLog final {
 public:
  explicit OriginFailureLog(std::string origin, absl::Duration interval = absl::Seconds(1))
      : origin_(std::move(origin)), limiter_(interval) {}

  void Record(uint32_t attempt, const absl::Status& status);

 private:
  const std::string origin_;
  LogRateLimiter limiter_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_LOGGING_H_
