// End-to-end tests of flightcache-origin: the built binary on a free port, called over gRPC.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "flightcache/sim/origin_model.h"
#include "flightcache/sim/sim_origin.h"
#include "flightcache/v1/origin.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/client_e2e_util.h"
#include "tests/testing/fake_clock.h"

namespace flightcache::e2e {
namespace {

namespace pb = ::flightcache::v1;
using ::testing::HasSubstr;

// A running flightcache-origin on a free port, with a stub to call it.
class Origin {
 public:
  explicit Origin(std::vector<std::string> flags) : dir_(MakeTempDir()) {
    std::vector<std::string> argv = {FLIGHTCACHE_ORIGIN_BIN, "--listen=127.0.0.1:0",
                                     "--port-file=" + dir_ + "/port",
                                     "--stats-file=" + stats_file(), "--stats-interval=20ms"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    process_ = std::make_unique<ChildProcess>(argv, ChildOptions{.dir = dir_});
    const std::optional<std::string> port = WaitForFile(dir_ + "/port");
    EXPECT_TRUE(port.has_value()) << process_->err();
    port_ = port.has_value() ? std::stoi(*port) : 0;
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
    stub_ = pb::Origin::NewStub(channel_);
  }

  pb::Origin::Stub& stub() { return *stub_; }
  ChildProcess& process() { return *process_; }
  int port() const { return port_; }
  std::string stats_file() const { return dir_ + "/stats.json"; }
  const std::string& dir() const { return dir_; }

  grpc::Status Fetch(const std::string& key, pb::FetchResponse* response, uint32_t attempt = 1) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    pb::FetchRequest request;
    request.set_key(key);
    request.set_attempt(attempt);
    return stub_->Fetch(&context, request, response);
  }

  // Waits until the stats file shows `key` == value (or fails after 20 s).
  bool WaitForStat(absl::string_view key, int64_t value) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (JsonInt(ReadFile(stats_file()), key) == value) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << key << " never reached " << value << ": " << ReadFile(stats_file());
    return false;
  }

  // SIGTERM; returns the final JSON line of stdout after a clean exit.
  std::string Terminate() {
    process_->Signal(SIGTERM);
    EXPECT_EQ(process_->WaitForExit(absl::Seconds(30)), 0) << process_->err();
    return LastLine(process_->out());
  }

 private:
  std::string dir_;
  std::unique_ptr<ChildProcess> process_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Origin::Stub> stub_;
};

// An asynchronous Fetch whose end the test can wait for.
struct AsyncFetch {
  grpc::ClientContext context;
  pb::FetchRequest request;
  pb::FetchResponse response;
  grpc::Status status;
  absl::Notification done;
  absl::Time started;
  absl::Duration latency;

  void Start(pb::Origin::Stub& stub, const std::string& key) {
    request.set_key(key);
    request.set_attempt(1);
    started = absl::Now();
    stub.async()->Fetch(&context, &request, &response, [this](grpc::Status s) {
      status = std::move(s);
      latency = absl::Now() - started;
      done.Notify();
    });
  }
  bool Wait() { return done.WaitForNotificationWithTimeout(absl::Seconds(30)); }
};

TEST(OriginE2eTest, ServesVersionedValuesAndReportsCountersOnExit) {
  Origin origin({"--latency=fixed:1ms", "--value-bytes=64", "--ttl=30s"});
  for (const auto& [key, version] :
       std::vector<std::pair<std::string, uint64_t>>{{"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}}) {
    pb::FetchResponse response;
    ASSERT_TRUE(origin.Fetch(key, &response).ok());
    const std::optional<sim::SimValueInfo> info = sim::DecodeSimValue(response.value());
    ASSERT_TRUE(info.has_value()) << response.value();
    EXPECT_EQ(info->key, key);
    EXPECT_EQ(info->version, version);
    EXPECT_EQ(response.value().size(), 64u);
    EXPECT_EQ(response.ttl_ms(), 30000);
  }
  pb::FetchResponse hedge;
  ASSERT_TRUE(origin.Fetch("b", &hedge, /*attempt=*/2).ok());

  const std::string out_first_line = origin.process().out();
  EXPECT_THAT(out_first_line,
              HasSubstr(absl::StrCat("{\"event\":\"listening\",\"port\":", origin.port(), "}")));
  const std::string last = origin.Terminate();
  EXPECT_THAT(last, HasSubstr("\"event\":\"exit\""));
  EXPECT_EQ(JsonInt(last, "fetches"), 5);
  EXPECT_EQ(JsonInt(last, "primary_fetches"), 4);
  EXPECT_EQ(JsonInt(last, "hedge_fetches"), 1);
  EXPECT_EQ(JsonInt(last, "values"), 5);
  EXPECT_EQ(JsonInt(last, "keys"), 2);
  EXPECT_EQ(JsonInt(last, "inflight"), 0);
  // The stats file holds the same final counters.
  EXPECT_EQ(JsonInt(ReadFile(origin.stats_file()), "fetches"), 5);
  EXPECT_THAT(origin.process().err(), HasSubstr("exiting: fetches=5"));
}

TEST(OriginE2eTest, NotFoundAndErrorRatesAreRoughlyAsConfigured) {
  Origin origin({"--latency=fixed:0ms", "--not-found-rate=0.2", "--error-rate=0.1", "--seed=7"});
  const int n = 400;
  int not_found = 0, errors = 0, values = 0;
  for (int i = 0; i < n; ++i) {
    const std::string key = absl::StrCat("key-", i);
    pb::FetchResponse response;
    const grpc::Status status = origin.Fetch(key, &response);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      ++not_found;
      EXPECT_TRUE(sim::KeyIsMissing(key, 0.2)) << key;
    } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      ++errors;
      EXPECT_FALSE(sim::KeyIsMissing(key, 0.2)) << key;
    } else {
      ASSERT_TRUE(status.ok()) << status.error_message();
      ++values;
    }
  }
  EXPECT_NEAR(static_cast<double>(not_found) / n, 0.2, 0.08);
  EXPECT_NEAR(static_cast<double>(errors) / (n - not_found), 0.1, 0.06);
  const std::string last = origin.Terminate();
  EXPECT_EQ(JsonInt(last, "not_found"), not_found);
  EXPECT_EQ(JsonInt(last, "errors"), errors);
  EXPECT_EQ(JsonInt(last, "values"), values);
}

// flightcache-origin and the server's sim:// origin run one model: with the same settings and seed,
// the same fetches in the same order get the same answers — the same value bytes, the same keys
// NOT_FOUND, the same fetches failing.
TEST(OriginE2eTest, AnswersAsTheServersSimOriginDoesForTheSameSeed) {
  Origin origin({"--latency=fixed:0ms", "--value-bytes=48", "--error-rate=0.2",
                 "--not-found-rate=0.3", "--ttl=2s", "--seed=5"});
  absl::StatusOr<sim::OriginModelOptions> options = sim::ParseSimOriginQuery(
      "latency_ms=0&jitter_ms=0&value_bytes=48&error_rate=0.2&not_found_rate=0.3&ttl_ms=2000&"
      "seed=5");
  ASSERT_TRUE(options.ok()) << options.status();
  testing::FakeTimerQueue timers;
  sim::SimOrigin sim_origin(*options, timers);
  int values = 0, not_found = 0, errors = 0;
  for (int i = 0; i < 60; ++i) {
    const std::string key = absl::StrCat("key-", i % 20);  // each key three times: versions
    pb::FetchResponse response;
    const grpc::Status status = origin.Fetch(key, &response);
    std::optional<absl::StatusOr<FetchResult>> sim_answer;
    sim_origin.Fetch({.key = key}, {},
                     [&](absl::StatusOr<FetchResult> r) { sim_answer = std::move(r); });
    timers.Advance(absl::ZeroDuration());
    ASSERT_TRUE(sim_answer.has_value()) << key;
    ASSERT_EQ(static_cast<int>(status.error_code()), static_cast<int>(sim_answer->status().code()))
        << key << ": flightcache-origin says " << status.error_message() << ", sim:// says "
        << sim_answer->status();
    if (status.ok()) {
      EXPECT_EQ(response.value(), (*sim_answer)->value) << key;
      EXPECT_EQ(absl::Milliseconds(response.ttl_ms()), (*sim_answer)->ttl) << key;
      ++values;
    }
    not_found += status.error_code() == grpc::StatusCode::NOT_FOUND;
    errors += status.error_code() == grpc::StatusCode::UNAVAILABLE;
  }
  // Every kind of answer was compared.
  EXPECT_GT(values, 10);
  EXPECT_GT(not_found, 3);
  EXPECT_GT(errors, 3);
  origin.Terminate();
}

TEST(OriginE2eTest, ReportsCancellationsWhenTheClientCancelsOrItsDeadlinePasses) {
  Origin origin({"--latency=fixed:60s", "--drain-timeout=0s"});
  {
    AsyncFetch fetch;
    fetch.Start(origin.stub(), "slow");
    ASSERT_TRUE(origin.WaitForStat("inflight", 1));
    fetch.context.TryCancel();
    ASSERT_TRUE(fetch.Wait());
    EXPECT_EQ(fetch.status.error_code(), grpc::StatusCode::CANCELLED);
    ASSERT_TRUE(origin.WaitForStat("cancelled", 1));
    EXPECT_EQ(JsonInt(ReadFile(origin.stats_file()), "deadline_exceeded"), 0);
    ASSERT_TRUE(origin.WaitForStat("inflight", 0));
  }
  {
    AsyncFetch fetch;
    fetch.context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    fetch.Start(origin.stub(), "slow");
    ASSERT_TRUE(fetch.Wait());
    EXPECT_EQ(fetch.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    ASSERT_TRUE(origin.WaitForStat("deadline_exceeded", 1));
    ASSERT_TRUE(origin.WaitForStat("cancelled", 2));
  }
  const std::string last = origin.Terminate();
  EXPECT_EQ(JsonInt(last, "cancelled"), 2);
  EXPECT_EQ(JsonInt(last, "values"), 0);  // nothing was answered
}

TEST(OriginE2eTest, ShutdownCancelsFetchesStillInFlightAfterTheDrainTimeout) {
  Origin origin({"--latency=fixed:60s", "--drain-timeout=100ms"});
  AsyncFetch fetch;
  fetch.Start(origin.stub(), "slow");
  ASSERT_TRUE(origin.WaitForStat("inflight", 1));
  const absl::Time start = absl::Now();
  const std::string last = origin.Terminate();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  ASSERT_TRUE(fetch.Wait());
  EXPECT_FALSE(fetch.status.ok());
  EXPECT_EQ(JsonInt(last, "inflight"), 0);
  EXPECT_EQ(JsonInt(last, "cancelled"), 1);
}

TEST(OriginE2eTest, TracksPeakConcurrencyAndSlowsDownWhenOverloaded) {
  // Base latency 500 ms; above 5 in flight it grows by (n - 5) / 5: the 10th is 1 s.
  Origin origin({"--latency=fixed:500ms", "--overload-threshold=5", "--overload-slope=1"});
  std::vector<std::unique_ptr<AsyncFetch>> fetches;
  for (int i = 0; i < 10; ++i) {
    fetches.push_back(std::make_unique<AsyncFetch>());
    fetches.back()->Start(origin.stub(), absl::StrCat("k", i));
  }
  absl::Duration slowest;
  for (auto& fetch : fetches) {
    ASSERT_TRUE(fetch->Wait());
    EXPECT_TRUE(fetch->status.ok()) << fetch->status.error_message();
    EXPECT_GE(fetch->latency, absl::Milliseconds(495));
    slowest = std::max(slowest, fetch->latency);
  }
  const std::string last = origin.Terminate();
  const int64_t peak = JsonInt(last, "peak_inflight");
  EXPECT_EQ(peak, 10) << "the fetches did not overlap; the machine is very slow";
  // The fetch that arrived as the peak-th in flight waited 500 ms * (1 + (peak - 5) / 5).
  if (peak > 5) {
    EXPECT_GE(slowest, absl::Milliseconds(500 + 100 * (peak - 5) - 5));
  }
}

TEST(OriginE2eTest, RejectsAboveTheConcurrencyLimitAtOnce) {
  Origin origin({"--latency=fixed:60s", "--reject-above=2", "--drain-timeout=0s"});
  AsyncFetch a, b;
  a.Start(origin.stub(), "a");
  b.Start(origin.stub(), "b");
  ASSERT_TRUE(origin.WaitForStat("inflight", 2));
  pb::FetchResponse response;
  const absl::Time start = absl::Now();
  EXPECT_EQ(origin.Fetch("c", &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  a.context.TryCancel();
  b.context.TryCancel();
  ASSERT_TRUE(a.Wait());
  ASSERT_TRUE(b.Wait());
  const std::string last = origin.Terminate();
  EXPECT_EQ(JsonInt(last, "rejected"), 1);
  EXPECT_EQ(JsonInt(last, "cancelled"), 2);
}

TEST(OriginE2eTest, BadFlagsExit2WithOneLineNamingTheFlag) {
  const std::string dir = MakeTempDir();
  for (const auto& [flag, name] :
       std::vector<std::pair<std::string, std::string>>{{"--latency=bogus", "--latency"},
                                                        {"--latency=fixed:5", "--latency"},
                                                        {"--value-bytes=-1", "--value-bytes"},
                                                        {"--error-rate=2", "--error-rate"},
                                                        {"--drain-timeout=10", "--drain-timeout"},
                                                        {"--no-such-flag", "--no-such-flag"}}) {
    const ProgramResult r = RunProgram({FLIGHTCACHE_ORIGIN_BIN, flag}, {.dir = dir});
    EXPECT_EQ(r.exit_code, 2) << flag << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(name)) << flag;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "") << flag;
  }
  const ProgramResult help = RunProgram({FLIGHTCACHE_ORIGIN_BIN, "--help"}, {.dir = dir});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Exit codes"));
  EXPECT_THAT(help.out, HasSubstr("--overload-threshold"));
}

TEST(OriginE2eTest, BusyPortOrUnwritablePortFileExits3) {
  Origin first({});
  const std::string dir = MakeTempDir();
  const ProgramResult busy = RunProgram(
      {FLIGHTCACHE_ORIGIN_BIN, absl::StrCat("--listen=127.0.0.1:", first.port())}, {.dir = dir});
  EXPECT_EQ(busy.exit_code, 3) << busy.err;
  EXPECT_THAT(busy.err, HasSubstr("cannot listen"));
  const ProgramResult no_dir = RunProgram(
      {FLIGHTCACHE_ORIGIN_BIN, "--listen=127.0.0.1:0", "--port-file=" + dir + "/missing/dir/port"},
      {.dir = dir});
  EXPECT_EQ(no_dir.exit_code, 3) << no_dir.err;
  first.Terminate();
}

}  // namespace
}  // namespace flightcache::e2e
