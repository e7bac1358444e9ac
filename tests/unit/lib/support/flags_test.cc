// Tests of lib/support/src/flags.cc, the flag layer of every program. The server's own flags and
// their environment fallbacks are tested in tests/unit/server/flags_test.cc.
#include "flightcache/support/flags.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(absl::Duration, test_timeout, absl::Seconds(1), "a duration flag for the test");
ABSL_FLAG(int, test_count, 1, "an int flag for the test");
ABSL_FLAG(bool, test_verbose, false, "a bool flag for the test");
ABSL_FLAG(std::string, test_name, "none", "a string flag for the test");

namespace flightcache::support {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// The tools' way: every linked flag, the tools' wording.
absl::Status Check(std::vector<std::string> args) { return ParseFlags(args, {}).status(); }

// The server's way: a list of flags, some with an environment fallback.
constexpr FlagSpec kListed[] = {{"test_count", true}, {"test_name", true}, {"test_verbose", false}};

class ListedFlagsTest : public ::testing::Test {
 protected:
  absl::StatusOr<ParsedFlags> Parse(std::vector<std::string> args) {
    return ParseFlags(args, {.flags = kListed,
                             .env = [this](const std::string& name) -> std::optional<std::string> {
                               auto it = env_.find(name);
                               if (it == env_.end()) return std::nullopt;
                               return it->second;
                             },
                             .wording = FlagWording::kServer,
                             .version_flag = true});
  }
  std::string Error(std::vector<std::string> args) {
    return std::string(Parse(std::move(args)).status().message());
  }
  std::map<std::string, std::string> env_;
};

TEST(CommandLineFlagsTest, AcceptsGoodFlagsInEveryAbslSpelling) {
  EXPECT_TRUE(Check({"--test-timeout=250ms", "--test_count=3", "--test-verbose"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_timeout), absl::Milliseconds(250));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 3);
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_verbose));
  EXPECT_TRUE(Check({"--notest-verbose", "-test-count", "7", "positional"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 7);
  EXPECT_TRUE(Check({"--test-verbose=false", "--", "--not-a-flag"}).ok());
  EXPECT_TRUE(Check({"--test-verbose", "--no-test-verbose"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_verbose));
}

TEST(CommandLineFlagsTest, UnknownFlagIsNamedWithDashes) {
  const absl::Status s = Check({"--no-such-flag=1"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "unknown flag --no-such-flag");
}

TEST(CommandLineFlagsTest, AbslOwnFlagsAreNotAProgramsFlags) {
  // absl's own parser defines --flagfile; a reference to it links it in.
  auto* volatile parse_command_line = &absl::ParseCommandLine;
  ASSERT_NE(parse_command_line, nullptr);
  ASSERT_NE(absl::FindCommandLineFlag("flagfile"), nullptr);
  EXPECT_EQ(Check({"--flagfile=/dev/null"}).message(), "unknown flag --flagfile");
  EXPECT_EQ(Check({"--version"}).message(), "unknown flag --version");
}

TEST(CommandLineFlagsTest, BadValuesNameTheFlagAndHint) {
  EXPECT_THAT(std::string(Check({"--test-timeout=5"}).message()),
              HasSubstr("--test-timeout: invalid value '5' (a duration needs a unit"));
  EXPECT_THAT(std::string(Check({"--test-count=many"}).message()),
              HasSubstr("--test-count: invalid value 'many' (expected an integer)"));
  EXPECT_THAT(std::string(Check({"--test-verbose=maybe"}).message()),
              HasSubstr("--test-verbose: invalid value 'maybe'"));
  EXPECT_THAT(std::string(Check({"--test-count"}).message()),
              HasSubstr("--test-count needs a value"));
  EXPECT_THAT(std::string(Check({"--notest-verbose=1"}).message()), HasSubstr("takes no value"));
}

TEST(CommandLineFlagsTest, AFlagIsNotAnotherFlagsValue) {
  EXPECT_EQ(Check({"--test-name", "--test-count=2"}).message(), "--test-name needs a value");
  EXPECT_TRUE(Check({"--test-count", "-3"}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), -3);
}

TEST(CommandLineFlagsTest, ValuesAndPositionalsKeepTheirDashes) {
  absl::StatusOr<ParsedFlags> parsed =
      ParseFlags({"--test-name=a-b", "x-y", "-", "--", "--g-h", "-i"}, {});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "a-b");
  EXPECT_THAT(parsed->positional, ElementsAre("x-y", "-", "--g-h", "-i"));
  EXPECT_THAT(parsed->given, ElementsAre("test_name"));
}

TEST(CommandLineFlagsTest, GivenFlagsAreNamedWithUnderscores) {
  absl::StatusOr<ParsedFlags> parsed = ParseFlags({"--test-count=1", "--notest-verbose"}, {});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->given, ElementsAre("test_count", "test_verbose"));
}

TEST(CommandLineFlagsTest, HelpIsRecognisedAndWinsOverMistakes) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"x", "-h"}, {"--helpfull"}, {"--no-such-flag", "--help"}}) {
    absl::StatusOr<ParsedFlags> parsed = ParseFlags(args, {});
    ASSERT_TRUE(parsed.ok()) << args[0];
    EXPECT_TRUE(parsed->help) << args[0];
  }
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--", "--help"}, {"--test-count=1"}}) {
    absl::StatusOr<ParsedFlags> parsed = ParseFlags(args, {});
    ASSERT_TRUE(parsed.ok()) << args[0];
    EXPECT_FALSE(parsed->help) << args[0];
  }
}

TEST(CommandLineFlagsTest, UsageListsTheFlagsWithDashes) {
  const std::string usage = UsageText("support/flags_test");
  EXPECT_THAT(usage, HasSubstr("--test-timeout (default 1s)"));
  EXPECT_THAT(usage, HasSubstr("a duration flag for the test"));
  EXPECT_THAT(usage, HasSubstr("--test-name (default \"none\")"));
  // By default only the programs' own flags (under client/) are listed, not absl's or ours here.
  EXPECT_THAT(UsageText(), Not(HasSubstr("test-timeout")));
  EXPECT_THAT(UsageText(), Not(HasSubstr("flagfile")));
}

TEST(CommandLineFlagsTest, EnvironmentNamesAndDashedNames) {
  EXPECT_EQ(FlagEnvName("max_key_bytes"), "FLIGHTCACHE_MAX_KEY_BYTES");
  EXPECT_EQ(FlagEnvName("max-key-bytes"), "FLIGHTCACHE_MAX_KEY_BYTES");
  EXPECT_EQ(DashedFlagName("max_key_bytes"), "max-key-bytes");
}

TEST_F(ListedFlagsTest, OnlyTheListedFlagsAreKnownInTheServersWording) {
  EXPECT_EQ(Error({"--test-timeout=1s"}), "--test-timeout: unknown flag (see --help)");
  EXPECT_EQ(Error({"--test-count"}), "--test-count: missing value (write --test-count=VALUE)");
  EXPECT_EQ(Error({"--notest-verbose=1"}),
            "--notest-verbose: takes no value (write --test-verbose=false)");
  EXPECT_EQ(Error({"--test-count=x"}), "--test-count: invalid value 'x' (expected an integer)");
}

TEST_F(ListedFlagsTest, EnvironmentIsTheFallbackForListedFlagsNotGiven) {
  env_["FLIGHTCACHE_TEST_COUNT"] = "5";
  env_["FLIGHTCACHE_TEST_NAME"] = "from-env";
  env_["FLIGHTCACHE_TEST_VERBOSE"] = "true";  // not marked from_env: ignored
  absl::StatusOr<ParsedFlags> parsed = Parse({"--test-name=from-argv"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 5);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "from-argv");  // the command line wins
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_verbose));
  EXPECT_THAT(parsed->given, ElementsAre("test_name"));
}

TEST_F(ListedFlagsTest, BadEnvironmentValueNamesTheFlagAndTheVariable) {
  env_["FLIGHTCACHE_TEST_COUNT"] = "lots";
  EXPECT_EQ(
      Error({}),
      "--test-count: invalid value 'lots' (from FLIGHTCACHE_TEST_COUNT) (expected an integer)");
}

TEST_F(ListedFlagsTest, ParsingAgainStartsFromTheDefaults) {
  ASSERT_TRUE(Parse({"--test-count=9", "--test-verbose"}).ok());
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 1);
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_verbose));
}

TEST_F(ListedFlagsTest, VersionIsAWordOfProgramsThatAskForIt) {
  absl::StatusOr<ParsedFlags> parsed = Parse({"--version"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->version);
  EXPECT_THAT(parsed->positional, IsEmpty());
}

}  // namespace
}  // namespace flightcache::support
