// Flag parsing with the exit codes every flightcache client program promises.
//
// absl::ParseCommandLine exits with code 1 on a bad flag and on --help; our programs promise
// exit 2 with one line naming the flag, and exit 0 for --help. ParseFlagsOrExit() therefore
// checks argv first (unknown flags, values that do not parse, a missing value), prints the
// usage itself for --help/-h, and only then hands argv to absl::ParseCommandLine.
//
// Thread-safety: call once from main() before starting threads.
//
// Usage:
//   absl::SetProgramUsageMessage(kUsage);
//   std::vector<std::string> args = client::ParseFlagsOrExit(argc, argv);
//   if (bad) client::ExitUsageError("--keys must be at least 1");
#ifndef FLIGHTCACHE_CLIENT_COMMON_FLAGS_H_
#define FLIGHTCACHE_CLIENT_COMMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace flightcache::client {

// Exit codes shared by flightcache-loadgen, flightcache-cli and flightcache-origin.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the program ran and its check failed (see each --help)
inline constexpr int kExitUsage = 2;    // bad flag, value or argument
inline constexpr int kExitRuntime = 3;  // could not run: target unreachable, port busy, file error

// Flag names may be spelt with dashes or underscores (--herd-size or --herd_size): absl flag
// names cannot contain '-', so the name part of every flag argument is rewritten to '_' first.
std::vector<std::string> NormalizeFlagArgs(absl::Span<const std::string> args);

// Checks `args` (already normalized) (argv without argv[0]) against the registered flags without
// changing any flag: unknown flags, values that do not parse and missing values give
// INVALID_ARGUMENT with a message that names the flag. Positional arguments and everything after
// "--" are ignored.
absl::Status CheckFlagArgs(absl::Span<const std::string> args);

// True when `args` asks for help (--help, -h, --helpfull, --help=...).
bool WantsHelp(absl::Span<const std::string> args);

// The usage text: the program usage message, then every flag defined in a file whose path
// contains `file_filter` (by default the programs' own flags, under client/), sorted by name.
std::string UsageText(absl::string_view file_filter = "client/");

// Parses the command line as described above. Returns the positional arguments (argv[0] and
// flags removed). Exits 0 after printing the usage for --help, and 2 for a bad flag.
std::vector<std::string> ParseFlagsOrExit(int argc, char** argv);

// True if flag `name` (underscore spelling) was given on the command line to ParseFlagsOrExit().
bool WasFlagGiven(absl::string_view name);

// Prints "<program>: <message>" and "(see --help)" on one line to stderr and exits with 2.
[[noreturn]] void ExitUsageError(absl::string_view message);

// The program's short name (argv[0] without directories), once flags are parsed.
std::string ProgramName();

}  // namespace flightcache::client

#endif  // FLIGHTCACHE_CLIENT_COMMON_FLAGS_H_
