// Helpers for the client programs' end-to-end tests: run a built binary as a child process
// (posix_spawn, output to files), wait for it with a timeout, signal it, read its files.
//
// Thread-safety: a Subprocess belongs to one test thread. Spawning is safe in a process that
// already runs gRPC threads (posix_spawn execs at once in the child).
// Lifetime: a Subprocess still running when destroyed is killed (SIGKILL) and reaped, so a
// failing test never leaves a server behind.
#ifndef FLIGHTCACHE_TESTS_E2E_CLIENT_E2E_UTIL_H_
#define FLIGHTCACHE_TESTS_E2E_CLIENT_E2E_UTIL_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/spawn.h"

extern char** environ;

namespace flightcache::e2e {

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
  std::string pattern = ::testing::TempDir() + "fc_client_e2e_XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  registry.dirs.push_back(pattern);
  return pattern;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Polls until `path` exists and is not empty, or the timeout passes.
inline std::optional<std::string> WaitForFile(const std::string& path,
                                              absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::string contents = ReadFile(path);
    if (!contents.empty()) return contents;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return std::nullopt;
}

// The integer value of "key": in a flat JSON object such as the origin's stats; -1 if absent.
inline int64_t JsonInt(absl::string_view json, absl::string_view key) {
  const std::string needle = absl::StrCat("\"", key, "\":");
  const size_t at = json.find(needle);
  if (at == absl::string_view::npos) return -1;
  absl::string_view rest = json.substr(at + needle.size());
  size_t end = 0;
  while (end < rest.size() && (rest[end] == '-' || (rest[end] >= '0' && rest[end] <= '9'))) ++end;
  int64_t value = -1;
  if (!absl::SimpleAtoi(rest.substr(0, end), &value)) return -1;
  return value;
}

class Subprocess {
 public:
  // Starts `argv` with stdout and stderr going to files in `dir`.
  Subprocess(std::vector<std::string> argv, const std::string& dir) {
    static int counter = 0;
    const std::string stem = absl::StrCat(dir, "/proc", counter++);
    out_path_ = stem + ".out";
    err_path_ = stem + ".err";
    int rc = 0;
    pid_ = flightcache::testing::SpawnProcess(argv, out_path_, err_path_, /*append=*/false, &rc);
    EXPECT_EQ(rc, 0) << "cannot start " << argv[0];
    if (rc != 0) pid_ = -1;
  }

  ~Subprocess() {
    if (pid_ > 0 && !exit_code_.has_value()) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
  }
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  void Signal(int signal) {
    if (pid_ > 0 && !exit_code_.has_value()) kill(pid_, signal);
  }

  // The exit code (128 + signal if killed by one), or nullopt if still running at the timeout.
  std::optional<int> Wait(absl::Duration timeout = absl::Seconds(60)) {
    if (exit_code_.has_value() || pid_ <= 0) return exit_code_;
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (absl::Now() >= deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  std::string out() const { return ReadFile(out_path_); }
  std::string err() const { return ReadFile(err_path_); }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string out_path_;
  std::string err_path_;
};

struct ProgramResult {
  int exit_code = -1;  // -1: timed out (the process was killed)
  std::string out;
  std::string err;
};

// Runs a program to completion.
inline ProgramResult RunProgram(std::vector<std::string> argv, const std::string& dir,
                                absl::Duration timeout = absl::Seconds(60)) {
  Subprocess process(std::move(argv), dir);
  ProgramResult result;
  result.exit_code = process.Wait(timeout).value_or(-1);
  result.out = process.out();
  result.err = process.err();
  return result;
}

// The last non-empty line of `text`.
inline std::string LastLine(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : std::string(lines.back());
}

}  // namespace flightcache::e2e

#endif  // FLIGHTCACHE_TESTS_E2E_CLIENT_E2E_UTIL_H_
