// The command-line flag layer of every flightcache program: flightcache-server, the client
// programs (flightcache-loadgen, -cli, -origin) and the end-to-end benchmark helpers.
//
// Flags are Abseil flags (ABSL_FLAG, defined in each program's own files); this layer parses the
// command line itself rather than with absl::ParseCommandLine, so that every mistake (unknown
// flag, missing value, bad value, in argv or in the environment) is one line that names the flag,
// and the program decides how to exit (absl exits 1 and prints several lines). The rules, the same
// for every program:
// - a flag is --name=value, --name value (unless the next argument starts with "--"), or --name
//   alone for a bool; one leading dash works too; --noname and --no-name set a bool to false;
// - names may be spelt with dashes or underscores (--max-key-bytes, --max_key_bytes): absl flag
//   names cannot contain '-', so the name part is rewritten to '_'; values are kept as given;
// - --help, -h, --helpfull (and absl's other help spellings) anywhere before "--" make the parse
//   report help and parse nothing else;
// - arguments that do not start with '-', "-" alone, and everything after "--" are positional;
// - a program that lists its flags may let some fall back, when not given, to the environment
//   variable FLIGHTCACHE_<NAME> (FLIGHTCACHE_MAX_KEY_BYTES), parsed by the same parser.
//
// Thread-safety: parsing sets process-wide flag values: call it from one thread (main, or a
// test), before other threads read flags, never concurrently.
//
// Usage, a program with its own exit codes (flightcache-server):
//   constexpr FlagSpec kFlags[] = {{"listen", true}, {"check_config", false}};
//   absl::StatusOr<ParsedFlags> parsed = ParseFlags(args, {.flags = kFlags, .env = env});
//   if (!parsed.ok()) { print parsed.status().message(); exit 2; }
// Usage, a command-line tool (flightcache-loadgen):
//   absl::SetProgramUsageMessage(kUsage);
//   std::vector<std::string> positional = support::ParseFlagsOrExit(argc, argv);
//   if (bad) support::ExitUsageError("--keys must be at least 1");
#ifndef FLIGHTCACHE_SUPPORT_FLAGS_H_
#define FLIGHTCACHE_SUPPORT_FLAGS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace flightcache::support {

// Exit codes of the command-line tools (flightcache-loadgen, -cli, -origin and the benchmark
// helpers). flightcache-server documents its own (bad flag or configuration: 2 as well).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the program ran and its check failed (see each --help)
inline constexpr int kExitUsage = 2;    // bad flag, value or argument
inline constexpr int kExitRuntime = 3;  // could not run: target unreachable, port busy, file error

// One flag of a program that lists its flags.
struct FlagSpec {
  absl::string_view name;  // the ABSL_FLAG name (underscores)
  bool from_env = false;   // when not given, read from FLIGHTCACHE_<NAME>
};

// Looks up an environment variable; nothing if it is unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
std::optional<std::string> ProcessEnv(const std::string& name);

// The environment variable a flag falls back to: "max_key_bytes" -> "FLIGHTCACHE_MAX_KEY_BYTES".
std::string FlagEnvName(absl::string_view flag_name);

// A flag name as users spell it: "max_key_bytes" -> "max-key-bytes".
std::string DashedFlagName(absl::string_view flag_name);

// The words of the parse errors. flightcache-server and the tools have printed different words
// for the same three mistakes since before their parsers became this one; scripts and tests
// match them, so both are kept. Every other message is the same for every program.
enum class FlagWording {
  // flightcache-server: "--bogus: unknown flag (see --help)",
  // "--listen: missing value (write --listen=VALUE)", "--nocheck-config: takes no value ...".
  kServer,
  // the tools: "unknown flag --bogus", "--target needs a value", "--noraw takes no value" (the
  // tool adds "(see --help)" when it exits, see ExitUsageError).
  kTools,
};

struct FlagParseOptions {
  // The program's flags, in --help order. They are reset to their defaults before parsing, so
  // that parsing again (in tests) inherits nothing. Empty: every flag linked into the program
  // except Abseil's own (--flagfile, --fromenv, ... are not offered), and nothing is reset.
  absl::Span<const FlagSpec> flags;
  // Where the `from_env` flags not given on the command line are looked up.
  EnvLookup env = ProcessEnv;
  FlagWording wording = FlagWording::kTools;
  // Whether --version is a word of this program (ParsedFlags::version) or an unknown flag.
  bool version_flag = false;
};

struct ParsedFlags {
  bool help = false;     // help was asked for; nothing else was parsed
  bool version = false;  // --version (FlagParseOptions::version_flag only)
  std::vector<std::string> positional;
  std::vector<std::string> given;     // names (underscores) of the flags set on the command line
  std::vector<std::string> from_env;  // ... and of those set from the environment
};

// Sets the flags named in `args` (argv without argv[0]), then the environment fallbacks.
// INVALID_ARGUMENT with one line that names the flag ("--ttl: invalid value 'x': ...", with
// " (from FLIGHTCACHE_TTL)" for a value from the environment) for any mistake.
absl::StatusOr<ParsedFlags> ParseFlags(absl::Span<const std::string> args,
                                       const FlagParseOptions& options);

// The tools' --help: the program usage message (absl::SetProgramUsageMessage), then every flag
// defined in a file whose path contains `flag_files`, sorted by name, with its default.
std::string UsageText(absl::string_view flag_files = "client/");

// The tools' front end: ParseFlags() with every linked flag and the tools' wording. Prints
// UsageText(flag_files) and exits 0 for help; prints the error as ExitUsageError() does and exits
// 2 for a mistake. Returns the positional arguments (argv[0] not included).
std::vector<std::string> ParseFlagsOrExit(int argc, char** argv,
                                          absl::string_view flag_files = "client/");

// ParseFlagsOrExit() for a tool that takes no positional argument: one is a usage error.
void ParseFlagsWithoutArgumentsOrExit(int argc, char** argv,
                                      absl::string_view flag_files = "client/");

// True if flag `name` (underscore spelling) was set on the command line given to
// ParseFlagsOrExit() (--noverbose counts as `verbose`).
bool WasFlagGiven(absl::string_view name);

// Prints "<program>: <message> (see --help)" on one line to stderr and exits with 2.
[[noreturn]] void ExitUsageError(absl::string_view message);

// The program's short name (argv[0] without directories), once ParseFlagsOrExit() has run.
std::string ProgramName();

}  // namespace flightcache::support

#endif  // FLIGHTCACHE_SUPPORT_FLAGS_H_
