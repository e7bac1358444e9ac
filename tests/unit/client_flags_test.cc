// Tests of client/common/flags.h (named client_flags_test to stay clear of the server's flags).
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "client/common/flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(absl::Duration, test_timeout, absl::Seconds(1), "a duration flag for the test");
ABSL_FLAG(int, test_count, 1, "an int flag for the test");
ABSL_FLAG(bool, test_verbose, false, "a bool flag for the test");

namespace flightcache::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

absl::Status Check(std::vector<std::string> args) { return CheckFlagArgs(NormalizeFlagArgs(args)); }

TEST(ClientFlagsTest, AcceptsGoodFlagsInEveryAbslSpelling) {
  EXPECT_TRUE(Check({"--test-timeout=250ms", "--test_count=3", "--test-verbose"}).ok());
  EXPECT_TRUE(Check({"--notest-verbose", "-test-count", "7", "positional"}).ok());
  EXPECT_TRUE(Check({"--test-verbose=false", "--", "--not-a-flag"}).ok());
}

TEST(ClientFlagsTest, UnknownFlagIsNamedWithDashes) {
  const absl::Status s = Check({"--no-such-flag=1"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "unknown flag --no-such-flag");
}

TEST(ClientFlagsTest, BadValuesNameTheFlagAndHint) {
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

TEST(ClientFlagsTest, NormalizeTouchesOnlyFlagNames) {
  EXPECT_EQ(NormalizeFlagArgs({"--a-b=c-d", "x-y", "-e-f", "--", "--g-h"}),
            (std::vector<std::string>{"--a_b=c-d", "x-y", "-e_f", "--", "--g-h"}));
}

TEST(ClientFlagsTest, HelpIsRecognised) {
  EXPECT_TRUE(WantsHelp({"--help"}));
  EXPECT_TRUE(WantsHelp({"x", "-h"}));
  EXPECT_TRUE(WantsHelp({"--helpfull"}));
  EXPECT_FALSE(WantsHelp({"--", "--help"}));
  EXPECT_FALSE(WantsHelp({"--test-count=1"}));
}

TEST(ClientFlagsTest, UsageListsTheFlagsWithDashes) {
  const std::string usage = UsageText("client_flags_test");
  EXPECT_THAT(usage, HasSubstr("--test-timeout (default 1s)"));
  EXPECT_THAT(usage, HasSubstr("a duration flag for the test"));
  // By default only the programs' own flags (under client/) are listed, not absl's or ours here.
  EXPECT_THAT(UsageText(), Not(HasSubstr("test-timeout")));
  EXPECT_THAT(UsageText(), Not(HasSubstr("flagfile")));
}

}  // namespace
}  // namespace flightcache::client
