#include "flightcache/support/flags.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

namespace flightcache::support {
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

// "--name=value" or "-name" without its dashes; `arg` starts with '-' and is not "-" or "--".
absl::string_view FlagBody(absl::string_view arg) { return arg.substr(arg[1] == '-' ? 2 : 1); }

bool IsFlagArg(absl::string_view arg) { return arg.size() >= 2 && arg[0] == '-' && arg != "--"; }

bool WantsHelp(absl::Span<const std::string> args) {
  for (const std::string& arg : args) {
    if (arg == "--") return false;
    if (!IsFlagArg(arg)) continue;
    const absl::string_view body = FlagBody(arg);
    if (IsHelpFlag(body.substr(0, body.find('=')))) return true;
  }
  return false;
}

// A hint for values that Abseil's own parsers reject without saying why.
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

// Abseil's parse errors start with "Illegal value '...' specified for flag '...'", which repeats
// what our message already says; keep only the explanation after it (a custom flag type's own).
std::string Explain(absl::string_view error) {
  if (absl::StartsWith(error, "Illegal value")) {
    const size_t sep = error.find("; ");
    if (sep == absl::string_view::npos) return "";
    error.remove_prefix(sep + 2);
  }
  return std::string(error);
}

// "--ttl: invalid value 'x'[ (from FLIGHTCACHE_TTL)]: why", or with the type's hint.
absl::Status BadValue(const absl::CommandLineFlag& flag, absl::string_view value,
                      absl::string_view from, absl::string_view error) {
  const std::string why = Explain(error);
  return absl::InvalidArgumentError(
      absl::StrCat("--", DashedFlagName(flag.Name()), ": invalid value '", value, "'", from,
                   why.empty() ? Hint(flag) : absl::StrCat(": ", why)));
}

absl::Status UnknownFlag(absl::string_view name, FlagWording wording) {
  return absl::InvalidArgumentError(
      wording == FlagWording::kServer
          ? absl::StrCat("--", DashedFlagName(name), ": unknown flag (see --help)")
          : absl::StrCat("unknown flag --", DashedFlagName(name)));
}

absl::Status MissingValue(absl::string_view name, FlagWording wording) {
  const std::string dashed = DashedFlagName(name);
  return absl::InvalidArgumentError(
      wording == FlagWording::kServer
          ? absl::StrCat("--", dashed, ": missing value (write --", dashed, "=VALUE)")
          : absl::StrCat("--", dashed, " needs a value"));
}

absl::Status TakesNoValue(absl::string_view negated, absl::string_view name, FlagWording wording) {
  return absl::InvalidArgumentError(
      wording == FlagWording::kServer
          ? absl::StrCat("--", DashedFlagName(negated), ": takes no value (write --",
                         DashedFlagName(name), "=false)")
          : absl::StrCat("--", DashedFlagName(negated), " takes no value"));
}

// Flags Abseil defines for itself (--flagfile, --fromenv, --version, ...): not a program's.
bool IsAbslOwn(const absl::CommandLineFlag& flag) {
  return absl::StrContains(flag.Filename(), "absl/flags/");
}

absl::CommandLineFlag* Lookup(absl::string_view name, absl::Span<const FlagSpec> flags) {
  if (flags.empty()) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr || flag->IsRetired() || IsAbslOwn(*flag)) return nullptr;
    return flag;
  }
  for (const FlagSpec& spec : flags) {
    if (spec.name == name) return absl::FindCommandLineFlag(name);
  }
  return nullptr;
}

absl::Status ResetToDefaults(absl::Span<const FlagSpec> flags) {
  for (const FlagSpec& spec : flags) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(spec.name);
    if (flag == nullptr) {
      return absl::InternalError(
          absl::StrCat("flag --", DashedFlagName(spec.name), " is not linked in"));
    }
    std::string error;
    if (!flag->ParseFrom(flag->DefaultValue(), &error)) {
      return absl::InternalError(
          absl::StrCat("cannot reset --", DashedFlagName(spec.name), ": ", error));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyEnvironment(const FlagParseOptions& options, absl::Span<const std::string> given,
                              std::vector<std::string>& from_env) {
  for (const FlagSpec& spec : options.flags) {
    if (!spec.from_env || std::find(given.begin(), given.end(), spec.name) != given.end()) {
      continue;
    }
    const std::string var = FlagEnvName(spec.name);
    const std::optional<std::string> value = options.env(var);
    if (!value.has_value()) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(spec.name);
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return BadValue(*flag, *value, absl::StrCat(" (from ", var, ")"), error);
    }
    from_env.emplace_back(spec.name);
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> ProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::string FlagEnvName(absl::string_view flag_name) {
  return absl::StrCat("FLIGHTCACHE_",
                      absl::AsciiStrToUpper(absl::StrReplaceAll(flag_name, {{"-", "_"}})));
}

std::string DashedFlagName(absl::string_view flag_name) {
  return absl::StrReplaceAll(flag_name, {{"_", "-"}});
}

absl::StatusOr<ParsedFlags> ParseFlags(absl::Span<const std::string> args,
                                       const FlagParseOptions& options) {
  ParsedFlags out;
  if (WantsHelp(args)) {
    out.help = true;
    return out;
  }
  if (absl::Status s = ResetToDefaults(options.flags); !s.ok()) return s;
  for (size_t i = 0; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    if (arg == "--") {
      out.positional.insert(out.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (!IsFlagArg(arg)) {
      out.positional.emplace_back(arg);
      continue;
    }
    const absl::string_view body = FlagBody(arg);
    const size_t eq = body.find('=');
    bool has_value = eq != absl::string_view::npos;
    absl::string_view value = has_value ? body.substr(eq + 1) : absl::string_view();
    std::string name = absl::StrReplaceAll(body.substr(0, eq), {{"-", "_"}});
    if (options.version_flag && name == "version") {
      out.version = true;
      continue;
    }
    absl::CommandLineFlag* flag = Lookup(name, options.flags);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      // --noverbose / --no-verbose for a bool flag.
      std::string positive = name.substr(absl::StartsWith(name, "no_") ? 3 : 2);
      absl::CommandLineFlag* negated = Lookup(positive, options.flags);
      if (negated != nullptr && negated->IsOfType<bool>()) {
        if (has_value) return TakesNoValue(name, positive, options.wording);
        flag = negated;
        name = std::move(positive);
        value = "false";
        has_value = true;
      }
    }
    if (flag == nullptr) return UnknownFlag(name, options.wording);
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "--")) {
        value = args[++i];
      } else {
        return MissingValue(name, options.wording);
      }
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) return BadValue(*flag, value, "", error);
    out.given.push_back(std::move(name));
  }
  if (absl::Status s = ApplyEnvironment(options, out.given, out.from_env); !s.ok()) return s;
  return out;
}

std::string UsageText(absl::string_view flag_files) {
  std::string out = absl::StrCat(absl::ProgramUsageMessage(), "\n\nFlags:\n");
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), flag_files)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  for (const absl::CommandLineFlag* flag : flags) {
    std::string default_value = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) default_value = absl::StrCat("\"", default_value, "\"");
    absl::StrAppend(&out, "  --", DashedFlagName(flag->Name()), " (default ", default_value,
                    ")\n      ", flag->Help(), "\n");
  }
  return out;
}

std::vector<std::string> ParseFlagsOrExit(int argc, char** argv, absl::string_view flag_files) {
  if (argc > 0) {
    absl::string_view program = argv[0];
    if (const size_t slash = program.rfind('/'); slash != absl::string_view::npos) {
      program.remove_prefix(slash + 1);
    }
    ProgramNameStorage() = std::string(program);
  }
  const std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  absl::StatusOr<ParsedFlags> parsed = ParseFlags(args, {});
  if (!parsed.ok()) ExitUsageError(parsed.status().message());
  if (parsed->help) {
    std::cout << UsageText(flag_files) << std::flush;
    std::exit(kExitOk);
  }
  GivenFlags() = std::move(parsed->given);
  return std::move(parsed->positional);
}

void ParseFlagsWithoutArgumentsOrExit(int argc, char** argv, absl::string_view flag_files) {
  const std::vector<std::string> positional = ParseFlagsOrExit(argc, argv, flag_files);
  if (!positional.empty()) {
    ExitUsageError(absl::StrCat("unexpected argument '", positional.front(), "'"));
  }
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

}  // namespace flightcache::support
