// ChildProcess: a program the test runs as a child process — the built binaries in end-to-end
// tests, and real servers (Redis) that integration tests start themselves.
//
// The child's stdout and stderr go to files in a temp directory (read them at any time with
// out() / err(), or wait for a line with WaitForLine()); its stdin is /dev/null. Its environment
// is the test's, minus FLIGHTCACHE_* variables (they would configure the child too), plus
// `options.env`. It starts with an empty signal mask (gRPC threads in the test may block signals)
// and, optionally, a RLIMIT_NOFILE set before exec (as a shell's `ulimit -n` or a container
// runtime would). Everything the child needs is prepared before fork(): between fork() and exec a
// child of a threaded process may only make async-signal-safe calls.
//
// Every wait takes a timeout. A child still running when the object is destroyed is killed
// (SIGKILL) and reaped, so a failing test leaves nothing behind.
//
// Thread-safety: one test thread uses an object.
//
// Usage:
//   ChildProcess redis({"/usr/bin/redis-server", "--port", port});
//   ASSERT_FALSE(redis.WaitForLine("Ready to accept").empty()) << redis.out();
//   redis.Signal(SIGSTOP);
//   EXPECT_EQ(redis.Terminate(), 0);
#ifndef FLIGHTCACHE_TESTS_TESTING_CHILD_PROCESS_H_
#define FLIGHTCACHE_TESTS_TESTING_CHILD_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

extern char** environ;

namespace flightcache::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A fresh directory under the test temp dir, removed with its contents when the test binary
// exits (ctest runs each test case in its own process).
inline std::string MakeTempDir() {
  struct Registry {
    std::vector<std::string> dirs;
    ~Registry() {
      std::error_code ignored;
      for (const std::string& dir : dirs) std::filesystem::remove_all(dir, ignored);
    }
  };
  static Registry registry;
  std::string pattern = ::testing::TempDir() + "fc_test_XXXXXX";
  const char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr) << pattern << ": " << std::strerror(errno);
  registry.dirs.push_back(pattern);
  return pattern;
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

// The last non-empty line of `text`.
inline std::string LastLine(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : std::string(lines.back());
}

struct ChildOptions {
  // NAME=VALUE entries added to the child's environment.
  std::vector<std::string> env;
  // Set in the child before exec, if given.
  struct OpenFileLimit {
    rlim_t soft;
    rlim_t hard;
  };
  std::optional<OpenFileLimit> open_file_limit;
  // Where the output files go; a fresh temp dir if empty.
  std::string dir;
};

class ChildProcess final {
 public:
  explicit ChildProcess(std::vector<std::string> argv, ChildOptions options = {}) {
    static int counter = 0;
    const std::string dir = options.dir.empty() ? MakeTempDir() : options.dir;
    const std::string stem = absl::StrCat(dir, "/child", getpid(), "_", counter++);
    out_path_ = stem + ".out";
    err_path_ = stem + ".err";
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "FLIGHTCACHE_", 12) != 0) env_strings.push_back(*e);
    }
    env_strings.insert(env_strings.end(), options.env.begin(), options.env.end());
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int out_fd = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int err_fd = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    EXPECT_TRUE(in_fd >= 0 && out_fd >= 0 && err_fd >= 0) << stem << ": " << std::strerror(errno);
    sigset_t empty;
    sigemptyset(&empty);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in_fd, STDIN_FILENO);
      dup2(out_fd, STDOUT_FILENO);
      dup2(err_fd, STDERR_FILENO);
      sigprocmask(SIG_SETMASK, &empty, nullptr);
      if (options.open_file_limit.has_value()) {
        const rlimit limit{.rlim_cur = options.open_file_limit->soft,
                           .rlim_max = options.open_file_limit->hard};
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
      }
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    EXPECT_GT(pid_, 0) << "fork: " << std::strerror(errno);
    for (int fd : {in_fd, out_fd, err_fd}) {
      if (fd >= 0) close(fd);
    }
  }

  ~ChildProcess() {
    if (pid_ <= 0 || exit_code_.has_value()) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return ReadFile(out_path_); }
  std::string err() const { return ReadFile(err_path_); }

  void Signal(int signal) {
    if (pid_ > 0 && !exit_code_.has_value()) kill(pid_, signal);
  }

  // The exit code once the child has exited (128 + the signal if a signal ended it; 127: it could
  // not be executed), or nothing if it still runs after `timeout`.
  std::optional<int> WaitForExit(absl::Duration timeout) {
    if (pid_ <= 0) return 127;
    const absl::Time deadline = absl::Now() + timeout;
    while (!exit_code_.has_value()) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (absl::Now() >= deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return exit_code_;
  }

  // SIGTERM, then the exit code; -1 if the child did not exit within `timeout`.
  int Terminate(absl::Duration timeout = absl::Seconds(30)) {
    Signal(SIGTERM);
    return WaitForExit(timeout).value_or(-1);
  }

  // The first line of stderr (or stdout, with `in_stdout`) that contains `needle`; empty if none
  // appeared within `timeout` or the child exited without writing one.
  std::string WaitForLine(absl::string_view needle, absl::Duration timeout = absl::Seconds(30),
                          bool in_stdout = false) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      const bool exited = WaitForExit(absl::ZeroDuration()).has_value();
      const std::string text = in_stdout ? out() : err();
      for (absl::string_view line : absl::StrSplit(text, '\n')) {
        if (absl::StrContains(line, needle)) return std::string(line);
      }
      if (exited || absl::Now() >= deadline) return "";
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string out_path_;
  std::string err_path_;
};

struct ProgramResult {
  int exit_code = -1;  // -1: still running at the timeout (then killed)
  std::string out;
  std::string err;
};

// Runs a program to completion.
inline ProgramResult RunProgram(std::vector<std::string> argv, ChildOptions options = {},
                                absl::Duration timeout = absl::Seconds(60)) {
  ChildProcess child(std::move(argv), std::move(options));
  ProgramResult result;
  result.exit_code = child.WaitForExit(timeout).value_or(-1);
  result.out = child.out();
  result.err = child.err();
  return result;
}

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_CHILD_PROCESS_H_
