// The built flightcache-server (FLIGHTCACHE_SERVER_BIN) as a ChildProcess
// (tests/testing/child_process.h), for e2e tests that watch it from outside.
//
// Usage:
//   ChildProcess server(ServerCommand({"--listen=127.0.0.1:0", "--metrics-listen="}));
//   const int port = WaitForServerPort(server);
//   ASSERT_GT(port, 0) << server.err();
#ifndef FLIGHTCACHE_TESTS_E2E_SERVER_PROCESS_H_
#define FLIGHTCACHE_TESTS_E2E_SERVER_PROCESS_H_

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "tests/testing/child_process.h"

namespace flightcache::e2e {

using ::flightcache::testing::ChildOptions;
using ::flightcache::testing::ChildProcess;
using ::flightcache::testing::ReadFile;
using ::flightcache::testing::ResidentKb;

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

// The server's command line: its binary, then `flags`.
inline std::vector<std::string> ServerCommand(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {FLIGHTCACHE_SERVER_BIN};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

// The gRPC port from the start-up line "... listening on ADDR (port N) ...", or 0 if the line did
// not appear within `timeout` (or the server exited).
inline int WaitForServerPort(ChildProcess& server, absl::Duration timeout = absl::Seconds(30)) {
  const std::string line = server.WaitForLine("(port ", timeout);
  const size_t at = line.find("(port ");
  if (at == std::string::npos) return 0;
  const std::string rest = line.substr(at + 6);
  int port = 0;
  return absl::SimpleAtoi(rest.substr(0, rest.find(')')), &port) ? port : 0;
}

}  // namespace flightcache::e2e

#endif  // FLIGHTCACHE_TESTS_E2E_SERVER_PROCESS_H_
