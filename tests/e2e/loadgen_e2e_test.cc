// End-to-end tests of flightcache-loadgen: the built binary against an in-process fake Cache.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/client_e2e_util.h"
#include "tests/e2e/fake_cache_server.h"

namespace flightcache::e2e {
namespace {

using ::testing::HasSubstr;

class LoadgenE2eTest : public ::testing::Test {
 protected:
  ProgramResult Loadgen(const FakeCacheServer& server, std::vector<std::string> flags) {
    std::vector<std::string> argv = {FLIGHTCACHE_LOADGEN_BIN, "--target=" + server.address(),
                                     "--json=" + json_path(), "--progress=off"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunProgram(argv, {.dir = dir_}, absl::Seconds(120));
  }
  std::string json_path() const { return dir_ + "/report.json"; }
  std::string Json() const { return ReadFile(json_path()); }
  // The integer `key` inside the JSON object that follows "\"section\":".
  int64_t SectionInt(absl::string_view section, absl::string_view key) const {
    const std::string json = Json();
    const size_t at = json.find(absl::StrCat("\"", section, "\":"));
    if (at == std::string::npos) return -1;
    return JsonInt(absl::string_view(json).substr(at), key);
  }

  const std::string dir_ = MakeTempDir();
};

TEST_F(LoadgenE2eTest, ClosedLoopReportsLatencyCodesAndTheServersStats) {
  FakeCacheServer server;
  const ProgramResult r =
      Loadgen(server, {"--requests=2000", "--concurrency=16", "--keys=100", "--seed=3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server.gets(), 2000);
  EXPECT_EQ(server.key_counts().size(), 100u);
  const std::string json = Json();
  EXPECT_EQ(JsonInt(json, "requests"), 2000);
  EXPECT_THAT(json, HasSubstr("\"mode\":\"closed\""));
  EXPECT_THAT(json, HasSubstr("\"status_codes\":{\"OK\":2000}"));
  EXPECT_EQ(SectionInt("sources", "LOADED"), 100);
  EXPECT_EQ(SectionInt("sources", "HIT"), 1900);
  EXPECT_EQ(SectionInt("server", "requests"), 2000);  // the Stats delta covers exactly our run
  EXPECT_EQ(SectionInt("server", "origin_fetches"), 100);
  EXPECT_THAT(json, HasSubstr("\"hit_ratio\":0.95"));
  EXPECT_THAT(json, HasSubstr("\"origin_fetches_per_request\":0.05"));
  for (const char* p : {"\"p50\":", "\"p90\":", "\"p99\":", "\"p99.9\":", "\"max\":"}) {
    EXPECT_THAT(json, HasSubstr(p));
  }
  // The same figures for people on stdout.
  EXPECT_THAT(r.out, HasSubstr("2000 calls"));
  EXPECT_THAT(r.out, HasSubstr("OK=2000"));
  EXPECT_THAT(r.out, HasSubstr("p99.9="));
  EXPECT_THAT(r.out, HasSubstr("hit_ratio=0.9500"));
  EXPECT_EQ(r.err, "");  // no progress lines when stderr is not a terminal
}

TEST_F(LoadgenE2eTest, OpenLoopSendsAtTheGivenRate) {
  FakeCacheServer server;
  const ProgramResult r = Loadgen(server, {"--rate=400", "--duration=1s", "--keys=50"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(JsonInt(Json(), "requests"), 400);  // scheduled at 0, 2.5, ..., 997.5 ms
  EXPECT_THAT(Json(), HasSubstr("\"mode\":\"open\""));
  EXPECT_THAT(Json(), HasSubstr("\"late_sends\":"));
  EXPECT_EQ(server.gets(), 400);
}

TEST_F(LoadgenE2eTest, BatchUsesBatchGetAndCountsKeys) {
  FakeCacheServer server;
  const ProgramResult r = Loadgen(server, {"--batch=8", "--requests=50", "--keys=1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server.batch_gets(), 50);
  EXPECT_EQ(server.gets(), 0);
  EXPECT_EQ(JsonInt(Json(), "requests"), 50);
  EXPECT_EQ(JsonInt(Json(), "keys"), 400);
}

TEST_F(LoadgenE2eTest, MixedRunSendsInvalidationsAndBatchesAtTheirShares) {
  FakeCacheServer server;
  const ProgramResult r =
      Loadgen(server, {"--requests=2000", "--invalidate-share=0.2", "--batch-share=0.3",
                       "--batch=4", "--keys=100", "--seed=5", "--concurrency=8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t gets = SectionInt("calls_by_kind", "Get");
  const int64_t batches = SectionInt("calls_by_kind", "BatchGet");
  const int64_t invalidations = SectionInt("calls_by_kind", "Invalidate");
  EXPECT_EQ(gets + batches + invalidations, 2000);
  // What the report says was sent is what the server received.
  EXPECT_EQ(server.gets(), gets);
  EXPECT_EQ(server.batch_gets(), batches);
  EXPECT_EQ(server.invalidates(), invalidations);
  EXPECT_EQ(JsonInt(Json(), "keys"), gets + 4 * batches + invalidations);
  // Shares within ~4 binomial standard deviations (about 0.01 each at 2,000 calls).
  EXPECT_NEAR(invalidations / 2000.0, 0.2, 0.04);
  EXPECT_NEAR(batches / 2000.0, 0.3, 0.045);
  // Invalidations make keys LOADED again (the fake server forgets them).
  EXPECT_GT(SectionInt("sources", "LOADED"), 100);
  EXPECT_THAT(r.out, HasSubstr("calls       Get="));
}

TEST_F(LoadgenE2eTest, MaxDeadlineGivesCallsRandomDeadlines) {
  // Every call takes 100 ms at the server; deadlines uniform on (0, 1 s]: the ~10% below 100 ms
  // expire, the ~70% above 300 ms succeed even when a busy machine (or a sanitizer) adds 200 ms.
  // One deadline for all would make them all expire or all succeed.
  FakeCacheServer server(absl::Milliseconds(100));
  const ProgramResult r =
      Loadgen(server, {"--requests=400", "--concurrency=100", "--max-deadline=1s", "--keys=1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t ok = SectionInt("status_codes", "OK");
  const int64_t expired = SectionInt("status_codes", "DEADLINE_EXCEEDED");
  EXPECT_EQ(ok + expired, 400) << Json();
  EXPECT_GE(expired, 15) << Json();  // ~40 expected; 15 is 4 standard deviations below
  EXPECT_GE(ok, 100) << Json();      // ~280 expected
}

TEST_F(LoadgenE2eTest, HerdAsksForOneFreshKeyPerWave) {
  FakeCacheServer server;
  const ProgramResult r =
      Loadgen(server, {"--scenario=herd", "--herd-size=40", "--waves=3", "--key-prefix=h-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto counts = server.key_counts();
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [key, count] : counts) {
    EXPECT_EQ(count, 40) << key;
    EXPECT_EQ(key.rfind("h-herd-", 0), 0u) << key;
  }
  EXPECT_EQ(JsonInt(Json(), "requests"), 120);
  EXPECT_EQ(JsonInt(Json(), "herd_size"), 40);
  EXPECT_EQ(SectionInt("sources", "LOADED"), 3);
}

TEST_F(LoadgenE2eTest, ExitsOneWhenTheErrorRateIsAboveTheLimit) {
  FakeCacheServer server;
  const ProgramResult failing =
      Loadgen(server, {"--key-prefix=err-", "--requests=100", "--max-error-rate=0.5"});
  EXPECT_EQ(failing.exit_code, 1) << failing.err;
  EXPECT_THAT(Json(), HasSubstr("\"UNAVAILABLE\":100"));
  EXPECT_THAT(Json(), HasSubstr("\"error_rate_exceeded\":true"));
  EXPECT_THAT(failing.err, HasSubstr("exceeds --max-error-rate"));

  const ProgramResult tolerated = Loadgen(server, {"--key-prefix=err-", "--requests=100"});
  EXPECT_EQ(tolerated.exit_code, 0) << tolerated.err;

  // NOT_FOUND is an answer, not an error.
  const ProgramResult missing =
      Loadgen(server, {"--key-prefix=missing-", "--requests=100", "--max-error-rate=0"});
  EXPECT_EQ(missing.exit_code, 0) << missing.err;
  EXPECT_THAT(Json(), HasSubstr("\"NOT_FOUND\":100"));
}

TEST_F(LoadgenE2eTest, OneProcessKeepsThousandsOfCallsInFlight) {
  // The server holds the first calls until 2000 are in flight at once (at most 8 s, inside the
  // calls' 10 s deadline), then every call takes 200 ms: only an asynchronous client reaches
  // 2000, however busy the machine; a client with fewer threads than calls stops short.
  FakeCacheServer server(absl::Milliseconds(200));
  server.HoldUntilInFlight(2000, absl::Seconds(8));
  const ProgramResult r =
      Loadgen(server, {"--concurrency=2000", "--duration=3s", "--deadline=10s", "--keys=100000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RecordProperty("peak_inflight", static_cast<int>(server.peak_inflight()));
  RecordProperty("requests", static_cast<int>(JsonInt(Json(), "requests")));
  EXPECT_EQ(server.peak_inflight(), 2000);
  EXPECT_GE(JsonInt(Json(), "requests"), 2000);
  EXPECT_THAT(Json(), HasSubstr("\"errors\":0"));
}

TEST_F(LoadgenE2eTest, UnreachableTargetExitsThree) {
  const ProgramResult r = RunProgram(
      {FLIGHTCACHE_LOADGEN_BIN, "--target=127.0.0.1:1", "--connect-timeout=300ms", "--requests=1"},
      {.dir = dir_});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("cannot connect to 127.0.0.1:1"));
}

TEST_F(LoadgenE2eTest, BadFlagsExitTwoWithOneLineNamingTheFlag) {
  for (const auto& [flags, name] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--distribution=zipf:-1"}, "--distribution"},
           {{"--distribution=pareto"}, "--distribution"},
           {{"--duration=5"}, "--duration"},
           {{"--deadline=0s"}, "--deadline"},
           {{"--rate=-3"}, "--rate"},
           {{"--scenario=storm"}, "--scenario"},
           {{"--scenario=herd", "--batch=4"}, "--batch"},
           {{"--keys=0"}, "--keys"},
           {{"--max-error-rate=1.5"}, "--max-error-rate"},
           {{"--concurrency=many"}, "--concurrency"},
           {{"--invalidate-share=1.5"}, "--invalidate-share"},
           {{"--batch-share=0.5"}, "--batch-share needs --batch"},
           {{"--batch=4", "--batch-share=0.8", "--invalidate-share=0.5"}, "at most 1"},
           {{"--max-deadline=-1s"}, "--max-deadline"},
           {{"--max-deadline=2h"}, "--max-deadline"},
           {{"--deadline=1s", "--max-deadline=1s"}, "exclude each other"},
           {{"--scenario=herd", "--invalidate-share=0.1"}, "--invalidate-share"},
           {{"--bogus=1"}, "--bogus"}}) {
    std::vector<std::string> argv = {FLIGHTCACHE_LOADGEN_BIN};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const ProgramResult r = RunProgram(argv, {.dir = dir_});
    EXPECT_EQ(r.exit_code, 2) << flags[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(name)) << flags[0];
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  const ProgramResult help = RunProgram({FLIGHTCACHE_LOADGEN_BIN, "--help"}, {.dir = dir_});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Exit codes: 0"));
  EXPECT_THAT(help.out, HasSubstr("--max-error-rate"));
}

}  // namespace
}  // namespace flightcache::e2e
