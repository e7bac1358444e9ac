#include "client/common/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace flightcache::client {
namespace {

// Set once by ParseFlagsOrExit() before any other thread exists; read-only afterwards.
std::string& ProgramNameStorage() {
  static auto* name = new std::string("flightcache");
  return *name;
}

// Names of the flags given on the command line; written by ParseFlagsOrExit() only.
std::vector<std::string>& GivenFlags() {
  static auto* given = new std::vector<std::string>();
  return *given;
}

bool IsHelpFlag(absl::string_view name) {
  return name == "help" || name == "helpfull" || name == "helpshort" || name == "h" ||
         name == "helppackage" || name == "helpon" || name == "helpmatch";
}

// Flags absl defines for itself that ParseCommandLine understands.
bool IsAbslBuiltin(absl::string_view name) {
  return name == "flagfile" || name == "fromenv" || name == "tryfromenv" || name == "undefok";
}

std::string Hint(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<absl::Duration>()) return " (a duration needs a unit: 250ms, 5s, 2m)";
  if (flag.IsOfType<bool>()) return " (expected true or false)";
  if (flag.IsOfType<int>() || flag.IsOfType<int64_t>() || flag.IsOfType<uint32_t>() ||
      flag.IsOfType<uint64_t>()) {
    return " (expected an integer)";
  }
  if (flag.IsOfType<double>()) return " (expected a number)";
  return "";
}

// "--herd-size=5" -> "--herd_size=5": absl flag names cannot contain '-', but the spec's flags
// are spelt with dashes. Only the name part changes; values and positional args stay as given.
std::string NormalizeArg(absl::string_view arg) {
  if (arg.size() < 2 || arg[0] != '-' || arg == "--") return std::string(arg);
  const size_t dashes = arg[1] == '-' ? 2 : 1;
  std::string out(arg);
  const size_t eq = out.find('=');
  const size_t name_end = eq == std::string::npos ? out.size() : eq;
  for (size_t i = dashes; i < name_end; ++i) {
    if (out[i] == '-') out[i] = '_';
  }
  return out;
}

std::string DisplayName(absl::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '_') c = '-';
  }
  return out;
}

}  // namespace

std::vector<std::string> NormalizeFlagArgs(absl::Span<const std::string> args) {
  std::vector<std::string> out;
  out.reserve(args.size());
  bool positional_only = false;
  for (const std::string& arg : args) {
    out.push_back(positional_only ? arg : NormalizeArg(arg));
    if (arg == "--") positional_only = true;
  }
  return out;
}

bool WantsHelp(absl::Span<const std::string> args) {
  for (const std::string& arg : args) {
    if (arg == "--") return false;
    if (arg == "-h") return true;
    if (!absl::StartsWith(arg, "--")) continue;
    absl::string_view name = absl::string_view(arg).substr(2);
    name = name.substr(0, name.find('='));
    if (IsHelpFlag(name)) return true;
  }
  return false;
}

absl::Status CheckFlagArgs(absl::Span<const std::string> args) {
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // positional ("-" alone included)
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string name(body.substr(0, eq));
    const bool has_value = eq != absl::string_view::npos;
    if (IsHelpFlag(name) || IsAbslBuiltin(name)) continue;

    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        if (has_value) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", DisplayName(name), " takes no value"));
        }
        continue;
      }
    }
    if (flag == nullptr || flag->IsRetired()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", DisplayName(name)));
    }
    std::string value;
    if (has_value) {
      value = std::string(body.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];  // "--flag value", as absl accepts it
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", DisplayName(name), " needs a value"));
    }
    // ParseFrom sets the flag; ParseCommandLine sets it again to the same value afterwards.
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", DisplayName(name), ": invalid value '", value, "'", Hint(*flag)));
    }
  }
  return absl::OkStatus();
}

std::string UsageText(absl::string_view file_filter) {
  std::string out = absl::StrCat(absl::ProgramUsageMessage(), "\n\nFlags:\n");
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), file_filter)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  for (const absl::CommandLineFlag* flag : flags) {
    std::string default_value = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) default_value = absl::StrCat("\"", default_value, "\"");
    absl::StrAppend(&out, "  --", DisplayName(flag->Name()), " (default ", default_value,
                    ")\n      ", flag->Help(), "\n");
  }
  return out;
}

std::vector<std::string> ParseFlagsOrExit(int argc, char** argv) {
  if (argc > 0) {
    absl::string_view program = argv[0];
    if (const size_t slash = program.rfind('/'); slash != absl::string_view::npos) {
      program.remove_prefix(slash + 1);
    }
    ProgramNameStorage() = std::string(program);
  }
  const std::vector<std::string> args =
      NormalizeFlagArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (WantsHelp(args)) {
    std::cout << UsageText() << std::flush;
    std::exit(kExitOk);
  }
  if (absl::Status status = CheckFlagArgs(args); !status.ok()) {
    ExitUsageError(status.message());
  }
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    absl::string_view name = absl::string_view(arg).substr(arg[1] == '-' ? 2 : 1);
    GivenFlags().emplace_back(name.substr(0, name.find('=')));
  }
  // absl::ParseCommandLine wants a char** and may keep pointers into it; the storage lives on
  // for the life of the process.
  static auto* storage = new std::vector<std::string>();
  storage->assign(1, argc > 0 ? argv[0] : "flightcache");
  storage->insert(storage->end(), args.begin(), args.end());
  static auto* normalized = new std::vector<char*>();
  for (std::string& arg : *storage) normalized->push_back(arg.data());
  std::vector<char*> rest =
      absl::ParseCommandLine(static_cast<int>(normalized->size()), normalized->data());
  return std::vector<std::string>(rest.begin() + 1, rest.end());
}

bool WasFlagGiven(absl::string_view name) {
  for (const std::string& given : GivenFlags()) {
    if (given == name) return true;
  }
  return false;
}

std::string ProgramName() { return ProgramNameStorage(); }

void ExitUsageError(absl::string_view message) {
  std::fprintf(stderr, "%s: %.*s (see --help)\n", ProgramName().c_str(),
               static_cast<int>(message.size()), message.data());
  std::exit(kExitUsage);
}

}  // namespace flightcache::client
