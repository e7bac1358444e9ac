// RedisProcess: a real redis-server (Debian's, from PATH) for the fleet tier's tests, started on
// a free loopback port without persistence (--save '' --appendonly no) as a ChildProcess
// (tests/testing/child_process.h). Stopped by PID: Kill() (SIGKILL, as a crash), Pause() /
// Resume() (SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing), Start()
// again on the same port (a restart). Killed and reaped on destruction, so a failing test leaves
// nothing behind.
//
// Every wait is bounded; failures are reported through gtest with Redis' log.
//
// Thread-safety: one test thread uses an object.
//
// Usage:
//   RedisProcess redis;
//   ASSERT_TRUE(redis.Start()) << redis.Log();
//   ... options.endpoint = {.host = "127.0.0.1", .port = redis.port()};
//   redis.Kill();
//   ASSERT_TRUE(redis.Start());  // the same port
#ifndef FLIGHTCACHE_TESTS_TESTING_REDIS_PROCESS_H_
#define FLIGHTCACHE_TESTS_TESTING_REDIS_PROCESS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/latch.h"

namespace flightcache::testing {

class RedisProcess final {
 public:
  // `password`: started with --requirepass when not empty.
  explicit RedisProcess(std::string password = "") : password_(std::move(password)) {}
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  // Starts redis-server (on a fresh free port the first time, on the same port afterwards) and
  // waits until it accepts connections. False, with a gtest failure, if it did not within
  // `timeout`.
  [[nodiscard]] bool Start(absl::Duration timeout = kTestWait) {
    EXPECT_FALSE(child_.has_value()) << "redis-server is already running";
    const std::string binary = FindInPath("redis-server");
    if (binary.empty()) {
      ADD_FAILURE() << "redis-server is not in PATH (scripts/install-deps.sh installs it)";
      return false;
    }
    // Another process may take the free port between our probe and Redis' bind: try a few.
    const bool fixed_port = port_ != 0;
    for (int attempt = 0; attempt < (fixed_port ? 1 : 5); ++attempt) {
      if (!fixed_port) port_ = FreePort();
      std::vector<std::string> argv = {
          binary,         "--port", absl::StrCat(port_), "--bind", "127.0.0.1", "--save", "",
          "--appendonly", "no",     "--daemonize",       "no"};
      if (!password_.empty()) {
        argv.push_back("--requirepass");
        argv.push_back(password_);
      }
      child_.emplace(std::move(argv));
      // Redis logs to stdout; an exited child (port taken) ends the wait early.
      if (!child_->WaitForLine("Ready to accept connections", timeout, /*in_stdout=*/true)
               .empty()) {
        return true;
      }
      last_log_ = Log();
      Kill();
    }
    ADD_FAILURE() << "redis-server did not start on port " << port_ << "; log:\n" << last_log_;
    return false;
  }

  // SIGKILL and reap. No-op if not running.
  void Kill() {
    if (!child_.has_value()) return;
    child_->Signal(SIGKILL);
    EXPECT_TRUE(child_->WaitForExit(kTestWait).has_value()) << "redis-server survived SIGKILL";
    child_.reset();
  }

  // SIGSTOP, and waits until the kernel has stopped the process (kill() returns before that: a
  // Redis still running for a moment would answer what a test sends "to a stopped Redis").
  void Pause() {
    Signal(SIGSTOP);
    for (const absl::Time deadline = absl::Now() + kTestWait;
         ProcessState() != 'T' && absl::Now() < deadline;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    EXPECT_EQ(ProcessState(), 'T') << "redis-server did not stop";
  }
  void Resume() { Signal(SIGCONT); }

  // Runs `redis-cli -p PORT args...` (Debian's redis-tools, beside redis-server) and returns its
  // output; a failure to run it is a gtest failure. For a test's own settings (CONFIG SET ...).
  std::string Cli(const std::vector<std::string>& args) {
    const std::string binary = FindInPath("redis-cli");
    if (binary.empty()) {
      ADD_FAILURE() << "redis-cli is not in PATH (scripts/install-deps.sh installs redis-tools)";
      return "";
    }
    std::vector<std::string> argv = {binary, "-p", absl::StrCat(port_)};
    if (!password_.empty()) argv.insert(argv.end(), {"-a", password_, "--no-auth-warning"});
    argv.insert(argv.end(), args.begin(), args.end());
    const ProgramResult result = RunProgram(std::move(argv), {}, kTestWait);
    EXPECT_EQ(result.exit_code, 0)
        << "redis-cli " << absl::StrJoin(args, " ") << ": " << result.err;
    return result.out;
  }

  int port() const { return port_; }
  std::string Log() const { return child_.has_value() ? child_->out() + child_->err() : last_log_; }

 private:
  static std::string FindInPath(const std::string& name) {
    const char* path = getenv("PATH");
    for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
      const std::string candidate = absl::StrCat(dir, "/", name);
      if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return "";
  }

  static int FreePort() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    int port = 0;
    if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    if (fd >= 0) close(fd);
    EXPECT_NE(port, 0) << "no free port: " << std::strerror(errno);
    return port;
  }

  // The state letter in /proc/PID/stat ('T': stopped), or '?'.
  char ProcessState() const {
    if (!child_.has_value()) return '?';
    const std::string stat = ReadFile(absl::StrCat("/proc/", child_->pid(), "/stat"));
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so from the last ')'.
    const size_t close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
  }

  void Signal(int signal) {
    ASSERT_TRUE(child_.has_value()) << "redis-server is not running";
    child_->Signal(signal);
  }

  const std::string password_;
  int port_ = 0;
  std::optional<ChildProcess> child_;
  std::string last_log_;  // of the last child killed
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_REDIS_PROCESS_H_
