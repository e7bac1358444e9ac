// Command-line flags of flightcache-server, mapped onto ServerConfig — the only place flags are
// read.
//
// Every setting is an Abseil flag (ABSL_FLAG in flags.cc) spelled with hyphens on the command
// line (--max-key-bytes=4096; underscores work too). A flag not given on the command line falls
// back to the environment variable FLIGHTCACHE_<NAME> (FLIGHTCACHE_MAX_KEY_BYTES), parsed by the
// same parser. Durations take units (250ms, 5s, 1m); sizes are bytes with optional KiB/MiB/GiB
// suffixes; --hedge-delay is `off`, a duration, or a percentile such as `p95`.
//
// Parsing is the flag layer every flightcache program shares (flightcache/support/flags.h): every
// error — unknown flag, missing value, bad value, in argv or in the environment — is one line
// naming the flag, and main can exit with status 2 before anything is bound.
//
// Thread-safety: ParseServerCommandLine() sets process-wide flag values: call it from one thread
// (main, or a test), never concurrently. It resets every flag to its default first, so calling it
// again (in tests) does not inherit earlier values.
//
// Usage:
//   absl::StatusOr<CommandLine> cl = ParseServerCommandLine(argc, argv);
//   if (!cl.ok()) { std::cerr << cl.status().message(); return 2; }
#ifndef FLIGHTCACHE_SERVER_FLAGS_H_
#define FLIGHTCACHE_SERVER_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "flightcache/support/flags.h"
#include "server/config.h"

namespace flightcache {

struct CommandLine {
  ServerConfig config;
  bool check_config = false;          // --check-config: validate, print, exit 0 without binding
  bool help = false;                  // --help
  bool version = false;               // --version
  std::vector<std::string> from_env;  // flags (underscore spelling) set from FLIGHTCACHE_*
};

// `message` (an error that starts "--name: ", as ServerConfig::Validate() gives) with
// " (from FLIGHTCACHE_NAME)" appended when that flag's value came from the environment: a
// container's operator set the variable, not the flag.
std::string NameErrorSource(const CommandLine& command_line, absl::string_view message);

// INVALID_ARGUMENT with one line that names the flag ("--ttl: invalid value 'x': ...") for any
// parse error. Does not run ServerConfig::Validate().
absl::StatusOr<CommandLine> ParseServerCommandLine(
    int argc, const char* const* argv, const support::EnvLookup& env = support::ProcessEnv);

// The --help text.
std::string ServerUsage(absl::string_view program);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLAGS_H_
