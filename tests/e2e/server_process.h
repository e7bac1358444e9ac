// The built flightcache-server (FLIGHTCACHE_SERVER_BIN) as a child process, for e2e tests that
// watch it from outside: its stderr in a file under the test's temp dir, its pid for /proc, and
// optionally a RLIMIT_NOFILE set in the child before it starts (as a shell's `ulimit -n`, or a
// container runtime, would). Killed (SIGKILL) and reaped on destruction if still running, so a
// failing test leaves nothing behind.
//
// Thread-safety: one test thread uses an object.
#ifndef FLIGHTCACHE_TESTS_E2E_SERVER_PROCESS_H_
#define FLIGHTCACHE_TESTS_E2E_SERVER_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

extern char** environ;

namespace flightcache::e2e {

// The server binary is built with the same sanitizer flags as this test.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kServerUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kServerUnderAsan = true;
#else
inline constexpr bool kServerUnderAsan = false;
#endif
#else
inline constexpr bool kServerUnderAsan = false;
#endif

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// VmRSS of process `pid` in kB, or -1.
inline int64_t ResidentKb(pid_t pid) {
  const std::string status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t kb = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb)) return kb;
  }
  return -1;
}

// This process's environment without its FLIGHTCACHE_* variables, which would configure the
// server too.
inline std::vector<std::string> ServerEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "FLIGHTCACHE_", 12) != 0) env.push_back(*e);
  }
  return env;
}

class ServerProcess final {
 public:
  struct OpenFileLimit {
    rlim_t soft;
    rlim_t hard;
  };

  explicit ServerProcess(const std::vector<std::string>& flags,
                         std::optional<OpenFileLimit> open_file_limit = std::nullopt) {
    static int counter = 0;
    const std::string stem =
        absl::StrCat(::testing::TempDir(), "fc_server_", getpid(), "_", counter++);
    err_path_ = stem + ".err";
    // Everything the child needs is prepared before fork(): between fork() and execve() a child
    // of a threaded process may only make async-signal-safe calls.
    std::vector<std::string> argv_strings = {FLIGHTCACHE_SERVER_BIN};
    argv_strings.insert(argv_strings.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = ServerEnvironment();
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int err_fd = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    EXPECT_GE(err_fd, 0) << err_path_ << ": " << std::strerror(errno);
    EXPECT_GE(null_fd, 0) << "/dev/null: " << std::strerror(errno);
    sigset_t empty;
    sigemptyset(&empty);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(null_fd, STDIN_FILENO);
      dup2(null_fd, STDOUT_FILENO);
      dup2(err_fd, STDERR_FILENO);
      // gRPC threads in this process may have signals blocked: give the child a clean mask.
      sigprocmask(SIG_SETMASK, &empty, nullptr);
      if (open_file_limit.has_value()) {
        const rlimit limit{.rlim_cur = open_file_limit->soft, .rlim_max = open_file_limit->hard};
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
      }
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    EXPECT_GT(pid_, 0) << "fork: " << std::strerror(errno);
    if (err_fd >= 0) close(err_fd);
    if (null_fd >= 0) close(null_fd);
  }

  ~ServerProcess() {
    if (pid_ <= 0 || exited_) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string err() const { return ReadFile(err_path_); }

  // The gRPC port from the start-up line "... listening on ADDR (port N) ...", or 0 if the line
  // did not appear within `timeout` (or the process exited).
  int WaitForPort(absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline && pid_ > 0) {
      const std::string text = err();
      const size_t at = text.find("(port ");
      if (at != std::string::npos) {
        const std::string rest = text.substr(at + 6);
        int port = 0;
        if (absl::SimpleAtoi(rest.substr(0, rest.find(')')), &port)) return port;
      }
      if (WaitForExit(absl::ZeroDuration()).has_value()) return 0;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return 0;
  }

  // The exit code once the process has exited (-1 if a signal ended it), or nothing if it still
  // runs after `timeout`.
  std::optional<int> WaitForExit(absl::Duration timeout) {
    if (pid_ <= 0) return -1;
    const absl::Time deadline = absl::Now() + timeout;
    while (!exited_) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        break;
      }
      if (absl::Now() >= deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return exit_code_;
  }

  // SIGTERM, then the exit code (-1 if it did not exit within `timeout` or died by a signal).
  int Terminate(absl::Duration timeout = absl::Seconds(30)) {
    if (pid_ <= 0 || exited_) return -1;
    kill(pid_, SIGTERM);
    return WaitForExit(timeout).value_or(-1);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string err_path_;
};

}  // namespace flightcache::e2e

#endif  // FLIGHTCACHE_TESTS_E2E_SERVER_PROCESS_H_
