#include "server/logging.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "flightcache/support/json_writer.h"

namespace flightcache {
namespace {

// One JSON object per line, so a log collector never has to guess where a message ends.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    std::string line =
        FormatJsonLogLine(absl::FromChrono(msg.time), absl::string_view(level.data(), level.size()),
                          absl::string_view(msg.payload.data(), msg.payload.size()));
    line.push_back('\n');
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

spdlog::level::level_enum ToSpdlogLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

struct ListenerFailureHandler {
  absl::Mutex mu;
  std::function<void(absl::string_view)> handler ABSL_GUARDED_BY(mu);
};

// Never destroyed: gRPC threads may still log while the process exits.
ListenerFailureHandler& GetListenerFailureHandler() {
  static ListenerFailureHandler* const handler = new ListenerFailureHandler;
  return *handler;
}

// gRPC's own log lines (gpr_log) go through spdlog too, so --log-format=json holds for every
// line the process writes.
void GprToSpdlog(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::info;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      level = spdlog::level::debug;
      break;
    case GPR_LOG_SEVERITY_INFO:
      level = spdlog::level::info;
      break;
    case GPR_LOG_SEVERITY_ERROR:
      level = spdlog::level::err;
      break;
  }
  spdlog::log(level, "grpc {}:{}: {}", args->file, args->line, args->message);
  if (args->severity == GPR_LOG_SEVERITY_ERROR &&
      absl::StartsWith(args->message, kGrpcAcceptFailurePrefix)) {
    ListenerFailureHandler& failure = GetListenerFailureHandler();
    absl::MutexLock lock(&failure.mu);
    if (failure.handler) failure.handler(args->message);
  }
}

// Protobuf's own log lines (its parser's, for one) go through spdlog too, at most one a second: a
// client can make the parser log once per request (a proto3 string that is not UTF-8).
void ProtobufToSpdlog(google::protobuf::LogLevel severity, const char* file, int line,
                      const std::string& message) {
  spdlog::level::level_enum level = spdlog::level::info;
  switch (severity) {
    case google::protobuf::LOGLEVEL_INFO:
      level = spdlog::level::info;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      level = spdlog::level::warn;
      break;
    case google::protobuf::LOGLEVEL_ERROR:
      level = spdlog::level::err;
      break;
    case google::protobuf::LOGLEVEL_FATAL:
      level = spdlog::level::critical;
      break;
  }
  static LogRateLimiter* const limiter = new LogRateLimiter(absl::Seconds(1));  // never destroyed
  const std::optional<int64_t> suppressed = limiter->Admit();
  if (!suppressed.has_value() && severity != google::protobuf::LOGLEVEL_FATAL) return;
  spdlog::log(level, "protobuf {}:{}: {}{}", file, line, message,
              suppressed.value_or(0) > 0
                  ? absl::StrCat(" (", *suppressed, " more protobuf messages suppressed)")
                  : "");
}

}  // namespace

std::string FormatJsonLogLine(absl::Time ts, absl::string_view level, absl::string_view message) {
  std::string line = "{\"ts\":";
  support::AppendJsonQuoted(line,
                            absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", ts, absl::UTCTimeZone()));
  line += ",\"level\":";
  support::AppendJsonQuoted(line, level);
  line += ",\"msg\":";
  support::AppendJsonQuoted(line, message);
  line.push_back('}');
  return line;
}

void InitLogging(LogLevel level, LogFormat format) {
  auto logger = std::make_shared<spdlog::logger>("flightcache",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(ToSpdlogLevel(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  gpr_set_log_function(&GprToSpdlog);
  google::protobuf::SetLogHandler(&ProtobufToSpdlog);
}

void SetGrpcListenerFailureHandler(std::function<void(absl::string_view message)> handler) {
  ListenerFailureHandler& failure = GetListenerFailureHandler();
  absl::MutexLock lock(&failure.mu);
  failure.handler = std::move(handler);
}

std::optional<int64_t> LogRateLimiter::Admit() {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (last_ != absl::InfinitePast() && now - last_ < interval_) {
    ++suppressed_;
    return std::nullopt;
  }
  last_ = now;
  return std::exchange(suppressed_, 0);
}

void OriginFailureLog::Record(uint32_t attempt, const absl::Status& status) {
  if (status.ok() || absl::IsNotFound(status) || absl::IsCancelled(status)) return;
  const std::optional<int64_t> suppressed = limiter_.Admit();
  if (!suppressed.has_value()) return;
  if (*suppressed > 0) {
    spdlog::warn("origin {} fetch failed (attempt {}): {} ({} more origin failures suppressed)",
                 origin_, attempt, status.ToString(), *suppressed);
  } else {
    spdlog::warn("origin {} fetch failed (attempt {}): {}", origin_, attempt, status.ToString());
  }
}

}  // namespace flightcache
