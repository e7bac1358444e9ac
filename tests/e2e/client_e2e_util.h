// Helpers for the client programs' end-to-end tests: the programs run as ChildProcesses
// (tests/testing/child_process.h) with their output in a temp dir; these read what they write.
#ifndef FLIGHTCACHE_TESTS_E2E_CLIENT_E2E_UTIL_H_
#define FLIGHTCACHE_TESTS_E2E_CLIENT_E2E_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/child_process.h"

namespace flightcache::e2e {

using ::flightcache::testing::ChildOptions;
using ::flightcache::testing::ChildProcess;
using ::flightcache::testing::LastLine;
using ::flightcache::testing::MakeTempDir;
using ::flightcache::testing::ProgramResult;
using ::flightcache::testing::ReadFile;
using ::flightcache::testing::RunProgram;

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

}  // namespace flightcache::e2e

#endif  // FLIGHTCACHE_TESTS_E2E_CLIENT_E2E_UTIL_H_
