// End-to-end tests of flightcache-cli: the built binary against an in-process fake Cache.
#include <string>
#include <vector>

#include "flightcache/support/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/client_e2e_util.h"
#include "tests/e2e/fake_cache_server.h"

namespace flightcache::e2e {
namespace {

using ::testing::HasSubstr;

class CliE2eTest : public ::testing::Test {
 protected:
  ProgramResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {FLIGHTCACHE_CLI_BIN, "--target=" + server_.address()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, {.dir = dir_});
  }

  FakeCacheServer server_;
  const std::string dir_ = MakeTempDir();
};

TEST_F(CliE2eTest, GetPrintsTheValueAndItsSource) {
  ProgramResult r = Cli({"get", "user:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "value-of-user:1\n");
  EXPECT_THAT(r.err, HasSubstr("source=LOADED"));
  r = Cli({"get", "user:1", "--raw"});
  EXPECT_EQ(r.out, "value-of-user:1");
  EXPECT_THAT(r.err, HasSubstr("source=HIT ttl_remaining=1m"));
  r = Cli({"--json", "get", "user:1"});
  EXPECT_EQ(r.out,
            "{\"key\":\"user:1\",\"value\":\"value-of-user:1\",\"source\":\"HIT\","
            "\"ttl_remaining_ms\":60000}\n");
}

TEST_F(CliE2eTest, StaleGetPrintsHowStaleTheValueIs) {
  ProgramResult r = Cli({"get", "stale:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "old-value-of-stale:1\n");
  EXPECT_THAT(r.err, HasSubstr("source=STALE stale=1.5s"));
  r = Cli({"--json", "get", "stale:1"});
  EXPECT_EQ(r.out,
            "{\"key\":\"stale:1\",\"value\":\"old-value-of-stale:1\",\"source\":\"STALE\","
            "\"ttl_remaining_ms\":0,\"stale_ms\":1500}\n");
}

TEST_F(CliE2eTest, FailedGetExitsOneNamingTheCode) {
  ProgramResult r = Cli({"get", "missing-key"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("get: NOT_FOUND: no such key"));
  r = Cli({"get", "err-1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(CliE2eTest, InvalidateReportsHowManyEntriesWentAway) {
  ASSERT_EQ(Cli({"get", "a"}).exit_code, 0);
  ASSERT_EQ(Cli({"get", "b"}).exit_code, 0);
  const ProgramResult r = Cli({"invalidate", "a", "b", "c"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "removed 2\n");
  EXPECT_THAT(Cli({"get", "a"}).err, HasSubstr("source=LOADED"));  // gone, so loaded again
}

TEST_F(CliE2eTest, InvalidateSendsTheAdminTokenFromItsFile) {
  ASSERT_EQ(Cli({"invalidate", "a"}).exit_code, 0);
  EXPECT_EQ(server_.last_invalidate_authorization(), "") << "no token unless asked";
  const std::string token_file = dir_ + "/admin-token";
  ASSERT_TRUE(support::WriteFileAtomically(token_file, "t0ken-42\n").ok());
  ProgramResult r = Cli({"--admin-token-file=" + token_file, "invalidate", "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server_.last_invalidate_authorization(), "Bearer t0ken-42");
  r = Cli({"--admin-token-file=" + dir_ + "/missing", "invalidate", "a"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--admin-token-file"));
}

TEST_F(CliE2eTest, StatsPrintsEveryCounter) {
  ASSERT_EQ(Cli({"get", "a"}).exit_code, 0);
  ASSERT_EQ(Cli({"get", "a"}).exit_code, 0);
  ProgramResult r = Cli({"stats"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("requests 2\n"));
  EXPECT_THAT(r.out, HasSubstr("hits 1\n"));
  EXPECT_THAT(r.out, HasSubstr("negative_hits 0\n"));
  EXPECT_THAT(r.out, HasSubstr("fleet_lease_waits 0\n"));
  r = Cli({"stats", "--json"});
  EXPECT_EQ(JsonInt(r.out, "requests"), 2);
  EXPECT_EQ(JsonInt(r.out, "origin_fetches"), 1);
  EXPECT_EQ(JsonInt(r.out, "fleet_hits"), 0) << r.out;
  EXPECT_EQ(JsonInt(r.out, "fleet_invalidations_received"), 0) << r.out;
  EXPECT_EQ(JsonInt(r.out, "permission_denied"), 0) << r.out;
}

TEST_F(CliE2eTest, HealthExitsZeroOnlyWhenServing) {
  ProgramResult r = Cli({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  server_.SetServing(false);
  r = Cli({"health"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "NOT_SERVING\n");
  server_.Shutdown();
  r = Cli({"health", "--deadline=2s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("health: UNAVAILABLE"));
}

TEST_F(CliE2eTest, BadUsageExitsTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"get"},
                                             {"get", "a", "b"},
                                             {"invalidate"},
                                             {"stats", "x"},
                                             {"frobnicate"},
                                             {"--deadline=0s", "stats"},
                                             {"--deadline=5", "stats"},
                                             {"--bogus", "stats"}}) {
    const ProgramResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 2) << (args.empty() ? "(none)" : args[0]) << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  const ProgramResult help = Cli({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Exit codes"));
}

}  // namespace
}  // namespace flightcache::e2e
