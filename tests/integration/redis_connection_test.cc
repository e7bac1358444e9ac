// RedisConnection and RedisSubscriber (server/fleet/) against a real redis-server that each test
// starts on a free port (tests/testing/redis_process.h): commands, pipelining, timeouts against a
// stopped Redis, failing fast while it is down, reconnecting after a restart, AUTH and SELECT,
// pub/sub with re-subscription. Every wait is bounded (kTestWait) and says what it waited for.
#include "server/fleet/redis_connection.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_subscriber.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"
#include "tests/testing/latch.h"
#include "tests/testing/redis_process.h"
#include "tests/testing/redis_test_options.h"

namespace flightcache {
namespace {

using ::flightcache::testing::kTestWait;
using ::flightcache::testing::Latch;
using ::flightcache::testing::RedisProcess;
using ::flightcache::testing::TestRedisOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Room for a busy 2-core machine (and TSan) between a deadline and the callback it fires.
constexpr absl::Duration kMargin = absl::Milliseconds(500);

// One command's outcome: what the callback got, how long after Command() it came, how often.
// (A Mutex, not an absl::Notification: the tsan preset annotates Mutex calls from our code.)
struct Call {
  absl::Time start;
  std::atomic<int> times{0};
  // How long Command() itself took: it must not wait for Redis.
  absl::Duration command_duration;

  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<RedisReply> result ABSL_GUARDED_BY(mu);
  absl::Duration elapsed ABSL_GUARDED_BY(mu);

  bool IsDone() {
    absl::MutexLock lock(&mu);
    return done;
  }
  absl::Duration Elapsed() {
    absl::MutexLock lock(&mu);
    return elapsed;
  }
};

std::shared_ptr<Call> Issue(RedisConnection& redis, std::vector<std::string> args) {
  auto call = std::make_shared<Call>();
  call->start = absl::Now();
  redis.Command(std::move(args), [call](absl::StatusOr<RedisReply> result) {
    if (call->times.fetch_add(1) > 0) return;  // counted; the test checks `times`
    absl::MutexLock lock(&call->mu);
    call->elapsed = absl::Now() - call->start;
    call->result = std::move(result);
    call->done = true;
  });
  call->command_duration = absl::Now() - call->start;
  return call;
}

// Waits for the callback; a missing callback fails the test's assertion on the result.
absl::StatusOr<RedisReply> Await(Call& call) {
  absl::MutexLock lock(&call.mu);
  if (!call.mu.AwaitWithTimeout(absl::Condition(&call.done), kTestWait)) {
    return absl::InternalError("test: the callback never ran");
  }
  return call.result;
}

absl::StatusOr<RedisReply> Exec(RedisConnection& redis, std::vector<std::string> args) {
  return Await(*Issue(redis, std::move(args)));
}

// A reply's parts, or (on error) something no reply is, so a failed call fails the expectation
// instead of crashing the test.
std::string Text(const absl::StatusOr<RedisReply>& r) {
  return r.ok() ? r->str : absl::StrCat("error: ", r.status().ToString());
}
int64_t Integer(const absl::StatusOr<RedisReply>& r) { return r.ok() ? r->integer : -1000; }
bool IsOk(const absl::StatusOr<RedisReply>& r) { return r.ok() && r->is_ok(); }
bool IsNil(const absl::StatusOr<RedisReply>& r) { return r.ok() && r->is_nil(); }

// Every state change a connection reported, in order.
class StateLog {
 public:
  absl::AnyInvocable<void(RedisState)> Listener() {
    return [this](RedisState state) {
      absl::MutexLock lock(&mu_);
      states_.push_back(state);
    };
  }

  // True once `state` has been reported `times` times in all.
  [[nodiscard]] bool WaitFor(RedisState state, int times = 1) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return std::count(states_.begin(), states_.end(), state) >= times;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kTestWait);
  }

  std::vector<RedisState> states() {
    absl::MutexLock lock(&mu_);
    return states_;
  }

  // And every call's outcome and latency (RedisConnection's on_call).
  void AddCall(absl::StatusCode code, absl::Duration latency) {
    absl::MutexLock lock(&mu_);
    calls_.emplace_back(code, latency);
  }
  std::vector<std::pair<absl::StatusCode, absl::Duration>> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  std::vector<RedisState> states_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<absl::StatusCode, absl::Duration>> calls_ ABSL_GUARDED_BY(mu_);
};

RedisConnection::Observers Observe(StateLog& log) {
  return {.on_state = log.Listener(),
          .on_call = [&log](absl::StatusCode code, absl::Duration latency) {
            log.AddCall(code, latency);
          }};
}

class RedisConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.Log(); }

  RedisOptions Options() const { return TestRedisOptions(redis_.port()); }

  // Commands wait for Redis as long as the test waits for them.
  RedisOptions PatientOptions() const {
    RedisOptions options = Options();
    options.command_timeout = kTestWait;
    options.stall_timeout = kTestWait;
    return options;
  }

  // Connects and waits until connected.
  std::unique_ptr<RedisConnection> Connect(const RedisOptions& options, StateLog& log) {
    auto connection = std::make_unique<RedisConnection>(loop_, options, Observe(log));
    EXPECT_TRUE(log.WaitFor(RedisState::kConnected)) << "never connected; redis log:\n"
                                                     << redis_.Log();
    return connection;
  }

  RedisProcess redis_;
  EventLoop loop_;
};

TEST_F(RedisConnectionTest, CommandsGetTheirReplies) {
  StateLog log;
  std::unique_ptr<RedisConnection> redis = Connect(Options(), log);
  EXPECT_EQ(redis->state(), RedisState::kConnected);

  const std::string binary("v\0al\r\nue", 8);
  absl::StatusOr<RedisReply> r = Exec(*redis, {"SET", "fc:{k}", binary, "PX", "60000"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->is_ok());
  r = Exec(*redis, {"GET", "fc:{k}"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, RedisReply::Type::kString);
  EXPECT_EQ(r->str, binary);
  r = Exec(*redis, {"PTTL", "fc:{k}"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, RedisReply::Type::kInteger);
  EXPECT_GT(r->integer, 50000);
  EXPECT_TRUE(IsNil(Exec(*redis, {"GET", "fc:{missing}"})));

  // A lease: the first SET NX wins, the second gets nil.
  EXPECT_TRUE(IsOk(Exec(*redis, {"SET", "fc:{k}:lease", "a", "NX", "PX", "2000"})));
  EXPECT_TRUE(IsNil(Exec(*redis, {"SET", "fc:{k}:lease", "b", "NX", "PX", "2000"})));
  r = Exec(*redis, {"DEL", "fc:{k}", "fc:{k}:lease"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->integer, 2);

  r = Exec(*redis, {"MGET", "fc:{k}", "fc:{x}"});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->elements.size(), 2u);
  EXPECT_TRUE(r->elements[0].is_nil());

  // An error reply is a failed call that carries Redis' message.
  ASSERT_TRUE(Exec(*redis, {"SET", "text", "abc"}).ok());
  r = Exec(*redis, {"INCR", "text"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(r.status().message(), HasSubstr("not an integer"));

  // Commands that would make this a subscriber connection are refused.
  EXPECT_EQ(Exec(*redis, {"SUBSCRIBE", "c"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Exec(*redis, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Text(Exec(*redis, {"ECHO", "still in step"})), "still in step");
}

TEST_F(RedisConnectionTest, ManyCommandsInFlightAtOnceAreAnsweredInOrder) {
  StateLog log;
  std::unique_ptr<RedisConnection> redis = Connect(PatientOptions(), log);

  // Stopped, Redis answers nothing: all N commands are sent and in flight together, and are
  // answered only once it resumes, in the order they were sent.
  constexpr int kCommands = 500;
  redis_.Pause();
  std::vector<std::shared_ptr<Call>> calls;
  for (int i = 0; i < kCommands; ++i) calls.push_back(Issue(*redis, {"INCR", "counter"}));
  absl::SleepFor(absl::Milliseconds(50));
  for (const auto& call : calls) ASSERT_FALSE(call->IsDone());
  redis_.Resume();
  for (int i = 0; i < kCommands; ++i) {
    absl::StatusOr<RedisReply> r = Await(*calls[i]);
    ASSERT_TRUE(r.ok()) << "command " << i << ": " << r.status();
    EXPECT_EQ(r->integer, i + 1) << "command " << i;
  }

  // From several threads at once: every command answered once.
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::vector<std::shared_ptr<Call>>> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        per_thread[t].push_back(Issue(*redis, {"RPUSH", absl::StrCat("list", t), absl::StrCat(i)}));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      absl::StatusOr<RedisReply> r = Await(*per_thread[t][i]);
      ASSERT_TRUE(r.ok()) << r.status();
      // One thread's commands keep their order.
      EXPECT_EQ(r->integer, i + 1);
      EXPECT_EQ(per_thread[t][i]->times.load(), 1);
    }
  }
}

TEST_F(RedisConnectionTest, StoppedRedisAnswersEachCallDeadlineExceededOnTime) {
  StateLog log;
  RedisOptions options = Options();
  options.command_timeout = absl::Milliseconds(20);
  options.stall_timeout = kTestWait;  // this test is about the timeout alone
  std::unique_ptr<RedisConnection> redis = Connect(options, log);
  ASSERT_TRUE(Exec(*redis, {"SET", "k", "before"}).ok());

  redis_.Pause();
  std::vector<std::shared_ptr<Call>> calls;
  for (int round = 0; round < 5; ++round) {
    // A few at once from two threads, then again a little later.
    std::vector<std::shared_ptr<Call>> a, b;
    std::thread other([&] {
      for (int i = 0; i < 4; ++i) b.push_back(Issue(*redis, {"GET", "k"}));
    });
    for (int i = 0; i < 4; ++i) a.push_back(Issue(*redis, {"GET", "k"}));
    other.join();
    calls.insert(calls.end(), a.begin(), a.end());
    calls.insert(calls.end(), b.begin(), b.end());
    absl::SleepFor(absl::Milliseconds(7));
  }
  for (const auto& call : calls) {
    absl::StatusOr<RedisReply> r = Await(*call);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
    EXPECT_GE(call->Elapsed(), options.command_timeout);
    EXPECT_LE(call->Elapsed(), options.command_timeout + kMargin);
    EXPECT_LE(call->command_duration, kMargin) << "Command() blocked its caller";
  }
  EXPECT_EQ(redis->state(), RedisState::kConnected);

  // Redis answers the stale commands once it resumes: their replies are dropped, the
  // callbacks do not run again, and later commands get their own replies.
  // A resumed Redis works through its backlog first: retried until a command makes it in time.
  redis_.Resume();
  absl::StatusOr<RedisReply> echo;
  for (int i = 0; i < 100 && !echo.ok(); ++i) {
    echo = Exec(*redis, {"ECHO", absl::StrCat("mine ", i)});
    if (echo.ok()) {
      EXPECT_EQ(echo->str, absl::StrCat("mine ", i)) << "a stale reply";
    }
  }
  ASSERT_TRUE(echo.ok()) << echo.status();
  absl::StatusOr<RedisReply> get;
  for (int i = 0; i < 100 && !get.ok(); ++i) get = Exec(*redis, {"GET", "k"});
  EXPECT_EQ(Text(get), "before");
  for (const auto& call : calls) EXPECT_EQ(call->times.load(), 1);
  EXPECT_THAT(log.states(), ElementsAre(RedisState::kConnected));
}

TEST_F(RedisConnectionTest, StalledConnectionIsDroppedCallsFailFastAndItComesBack) {
  StateLog log;
  RedisOptions options = Options();
  options.command_timeout = absl::Seconds(1);
  options.stall_timeout = absl::Milliseconds(300);
  options.connect_timeout = absl::Seconds(1);  // a loaded machine still connects first time
  std::unique_ptr<RedisConnection> redis = Connect(options, log);

  // Dropped after stall_timeout: the command in flight fails then, before its own timeout.
  redis_.Pause();
  std::shared_ptr<Call> stalled = Issue(*redis, {"PING"});
  EXPECT_EQ(Await(*stalled).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(stalled->Elapsed(), options.stall_timeout);
  EXPECT_LT(stalled->Elapsed(), options.command_timeout);
  ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "a stalled connection was kept";
  // Reconnecting does not help a stopped Redis (it accepts, but never answers the handshake):
  // meanwhile every call fails at once instead of waiting out its timeout.
  for (int i = 0; i < 5; ++i) {
    std::shared_ptr<Call> call = Issue(*redis, {"GET", "k"});
    EXPECT_EQ(Await(*call).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_LT(call->Elapsed(), kMargin);
    absl::SleepFor(absl::Milliseconds(100));
  }

  redis_.Resume();
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected, 2)) << "did not reconnect after SIGCONT";
  EXPECT_EQ(Text(Exec(*redis, {"ECHO", "back"})), "back");
  EXPECT_THAT(log.states(),
              ElementsAre(RedisState::kConnected, RedisState::kDegraded, RedisState::kConnected));
}

TEST_F(RedisConnectionTest, KilledRedisFailsCallsFastAndIsReconnectedAfterRestart) {
  StateLog log;
  const RedisOptions options = Options();  // failing fast must not mean timing out
  std::unique_ptr<RedisConnection> redis = Connect(options, log);
  ASSERT_TRUE(Exec(*redis, {"SET", "k", "v"}).ok());

  // Commands in flight when Redis dies fail at once, not at their timeout.
  redis_.Pause();
  std::vector<std::shared_ptr<Call>> in_flight;
  for (int i = 0; i < 10; ++i) in_flight.push_back(Issue(*redis, {"GET", "k"}));
  absl::SleepFor(absl::Milliseconds(20));
  redis_.Kill();
  for (const auto& call : in_flight) {
    EXPECT_EQ(Await(*call).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_LT(call->Elapsed(), options.command_timeout);
  }
  ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "never reported degraded";
  EXPECT_EQ(redis->state(), RedisState::kDegraded);

  // While it is down (several reconnect attempts fail meanwhile), calls fail fast.
  for (int i = 0; i < 5; ++i) {
    std::shared_ptr<Call> call = Issue(*redis, {"GET", "k"});
    EXPECT_EQ(Await(*call).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_LT(call->Elapsed(), kMargin);
    absl::SleepFor(absl::Milliseconds(50));
  }

  ASSERT_TRUE(redis_.Start()) << "restart on port " << redis_.port();
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected, 2)) << "did not reconnect by itself";
  EXPECT_EQ(redis->state(), RedisState::kConnected);
  EXPECT_TRUE(IsNil(Exec(*redis, {"GET", "k"})));  // a fresh Redis: nothing persisted
  // Each change reported once, however many attempts failed in between.
  EXPECT_THAT(log.states(),
              ElementsAre(RedisState::kConnected, RedisState::kDegraded, RedisState::kConnected));
}

// The lines spdlog's default logger writes while it lives (it replaces the default logger,
// which must not be logging meanwhile: create it before anything that logs on another thread).
class LogCapture final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static std::shared_ptr<LogCapture> Install() {
    auto capture = std::make_shared<LogCapture>();
    capture->previous_ = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", capture));
    return capture;
  }
  void Uninstall() { spdlog::set_default_logger(previous_); }

  // How many lines contain `text`.
  int Count(absl::string_view text) {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) {
      return absl::StrContains(l, text);
    }));
  }
  std::string All() {
    absl::MutexLock lock(&mu_);
    return absl::StrJoin(lines_, "\n");
  }

 private:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    absl::MutexLock lock(&mu_);
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

  std::shared_ptr<spdlog::logger> previous_;
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

TEST_F(RedisConnectionTest, EachStateChangeIsLoggedOnce) {
  std::shared_ptr<LogCapture> capture = LogCapture::Install();
  {
    StateLog log;
    std::unique_ptr<RedisConnection> redis = Connect(Options(), log);
    redis_.Kill();
    ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "never reported degraded";
    absl::SleepFor(absl::Milliseconds(200));  // several failed attempts (backoff 10-100 ms)
    ASSERT_TRUE(redis_.Start());
    ASSERT_TRUE(log.WaitFor(RedisState::kConnected, 2)) << "never connected again";
  }
  capture->Uninstall();
  // "... (commands) connected", "... unavailable: ...", "... (commands) connected again after".
  EXPECT_EQ(capture->Count(") connected"), 2) << capture->All();
  EXPECT_EQ(capture->Count(") connected again after"), 1) << capture->All();
  EXPECT_EQ(capture->Count("unavailable"), 1) << capture->All();
}

TEST_F(RedisConnectionTest, NoRedisAtStartIsDegradedUntilItComes) {
  redis_.Kill();
  StateLog log;
  RedisConnection redis(loop_, Options(), Observe(log));
  ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "never reported degraded";
  EXPECT_EQ(Exec(redis, {"PING"}).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(redis_.Start());
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected)) << "did not connect once Redis came";
  EXPECT_EQ(Text(Exec(redis, {"PING"})), "PONG");
}

TEST_F(RedisConnectionTest, DestroyingTheConnectionCancelsWhatIsInFlight) {
  StateLog log;
  std::unique_ptr<RedisConnection> redis = Connect(PatientOptions(), log);
  redis_.Pause();
  std::vector<std::shared_ptr<Call>> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(Issue(*redis, {"GET", "k"}));
  const absl::Time start = absl::Now();
  redis.reset();
  EXPECT_LT(absl::Now() - start, kMargin) << "the destructor waited for Redis";
  for (const auto& call : calls) {
    ASSERT_TRUE(call->IsDone()) << "a callback outlived the connection";
    EXPECT_EQ(Await(*call).status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(call->times.load(), 1);
  }
  redis_.Resume();
}

TEST_F(RedisConnectionTest, ObserversHearOfEveryCallWithItsLatency) {
  StateLog log;
  RedisOptions options = Options();
  options.command_timeout = absl::Milliseconds(300);  // a healthy round trip, even on a busy CI
  options.stall_timeout = kTestWait;
  std::unique_ptr<RedisConnection> redis = Connect(options, log);
  ASSERT_TRUE(IsOk(Exec(*redis, {"SET", "text", "abc"})));
  EXPECT_TRUE(IsNil(Exec(*redis, {"GET", "missing"})));
  EXPECT_FALSE(Exec(*redis, {"INCR", "text"}).ok());
  EXPECT_FALSE(Exec(*redis, {}).ok());
  redis_.Pause();
  EXPECT_FALSE(Exec(*redis, {"GET", "text"}).ok());
  redis_.Resume();

  const auto calls = log.calls();
  ASSERT_EQ(calls.size(), 5u);
  EXPECT_EQ(calls[0].first, absl::StatusCode::kOk);
  EXPECT_EQ(calls[1].first, absl::StatusCode::kOk);
  EXPECT_EQ(calls[2].first, absl::StatusCode::kInternal);
  EXPECT_EQ(calls[3].first, absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls[4].first, absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(calls[4].second, options.command_timeout);
  EXPECT_LE(calls[4].second, options.command_timeout + kMargin);
  for (const auto& [code, latency] : calls) EXPECT_GT(latency, absl::ZeroDuration());
}

TEST_F(RedisConnectionTest, CommandsBeyondMaxInFlightAreRefused) {
  StateLog log;
  RedisOptions options = PatientOptions();
  options.max_in_flight = 3;
  std::unique_ptr<RedisConnection> redis = Connect(options, log);
  redis_.Pause();
  std::vector<std::shared_ptr<Call>> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(Issue(*redis, {"INCR", "n"}));
  EXPECT_EQ(Await(*calls[3]).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Await(*calls[4]).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(calls[0]->IsDone());
  redis_.Resume();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Integer(Await(*calls[i])), i + 1);
}

class RedisAuthTest : public ::testing::Test {
 protected:
  RedisProcess redis_{"s3cret"};
  EventLoop loop_;
};

TEST_F(RedisAuthTest, AuthenticatesAndSelectsTheDatabase) {
  ASSERT_TRUE(redis_.Start()) << redis_.Log();
  RedisOptions options;
  options.endpoint = {.host = "127.0.0.1", .port = redis_.port(), .db = 2};
  options.password = "s3cret";
  StateLog log2;
  RedisConnection db2(loop_, options, Observe(log2));
  options.endpoint.db = 0;
  StateLog log0;
  RedisConnection db0(loop_, options, Observe(log0));
  ASSERT_TRUE(log2.WaitFor(RedisState::kConnected)) << redis_.Log();
  ASSERT_TRUE(log0.WaitFor(RedisState::kConnected)) << redis_.Log();

  ASSERT_TRUE(IsOk(Exec(db2, {"SET", "k", "in db 2"})));
  EXPECT_EQ(Text(Exec(db2, {"GET", "k"})), "in db 2");
  EXPECT_TRUE(IsNil(Exec(db0, {"GET", "k"}))) << "SELECT 2 was not sent";
}

TEST_F(RedisAuthTest, AWrongPasswordNeverConnects) {
  ASSERT_TRUE(redis_.Start()) << redis_.Log();
  RedisOptions options;
  options.endpoint = {.host = "127.0.0.1", .port = redis_.port()};
  options.password = "wrong";
  options.min_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(20);
  StateLog log;
  RedisConnection redis(loop_, options, Observe(log));
  ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "never reported degraded";
  absl::SleepFor(absl::Milliseconds(200));  // several attempts
  EXPECT_EQ(Exec(redis, {"PING"}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(log.states(), ElementsAre(RedisState::kDegraded));
}

// Messages received by a subscriber, and how often it re-subscribed.
class Inbox {
 public:
  RedisSubscriber::Callbacks Callbacks(StateLog& log) {
    return {
        .on_message =
            [this](absl::string_view channel, absl::string_view message) {
              absl::MutexLock lock(&mu_);
              messages_.push_back(absl::StrCat(channel, "=", message));
            },
        .on_resubscribed =
            [this] {
              absl::MutexLock lock(&mu_);
              ++resubscribed_;
            },
        .on_state = log.Listener(),
    };
  }

  [[nodiscard]] bool WaitForMessages(size_t n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return messages_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kTestWait);
  }
  std::vector<std::string> messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  int resubscribed() {
    absl::MutexLock lock(&mu_);
    return resubscribed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> messages_ ABSL_GUARDED_BY(mu_);
  int resubscribed_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(RedisConnectionTest, SubscriberGetsMessagesOfItsChannels) {
  StateLog commands_log;
  std::unique_ptr<RedisConnection> redis = Connect(Options(), commands_log);
  StateLog log;
  Inbox inbox;
  RedisSubscriber subscriber(loop_, Options(), {"fc:a", "fc:b"}, inbox.Callbacks(log));
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected)) << "never subscribed";

  // PUBLISH counts the subscribers that got it: ours is subscribed to both channels.
  EXPECT_EQ(Integer(Exec(*redis, {"PUBLISH", "fc:a", "one"})), 1);
  EXPECT_EQ(Integer(Exec(*redis, {"PUBLISH", "fc:other", "ignored"})), 0);
  EXPECT_EQ(Integer(Exec(*redis, {"PUBLISH", "fc:b", std::string("t\0o", 3)})), 1);
  ASSERT_TRUE(inbox.WaitForMessages(2)) << "published messages never arrived";
  EXPECT_THAT(inbox.messages(), ElementsAre("fc:a=one", std::string("fc:b=t\0o", 8)));
  EXPECT_EQ(inbox.resubscribed(), 0);
}

TEST_F(RedisConnectionTest, SubscriberResubscribesAfterRestartAndSaysSo) {
  StateLog log;
  Inbox inbox;
  RedisSubscriber subscriber(loop_, Options(), {"fc:a"}, inbox.Callbacks(log));
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected)) << "never connected";

  redis_.Kill();
  ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "the lost subscription went unnoticed";
  ASSERT_TRUE(redis_.Start());
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected, 2)) << "did not subscribe again";
  EXPECT_EQ(inbox.resubscribed(), 1);

  StateLog commands_log;
  std::unique_ptr<RedisConnection> redis = Connect(Options(), commands_log);
  EXPECT_EQ(Integer(Exec(*redis, {"PUBLISH", "fc:a", "after"})), 1);
  ASSERT_TRUE(inbox.WaitForMessages(1)) << "the message never arrived";
  EXPECT_THAT(inbox.messages(), ElementsAre("fc:a=after"));
}

TEST_F(RedisConnectionTest, SubscriberProbesItsSilentConnection) {
  RedisOptions options = Options();
  options.subscriber_probe_interval = absl::Milliseconds(50);
  options.stall_timeout = absl::Milliseconds(500);
  options.connect_timeout = absl::Seconds(1);
  StateLog log;
  Inbox inbox;
  RedisSubscriber subscriber(loop_, options, {"fc:a"}, inbox.Callbacks(log));
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected)) << "never connected";
  // Probes answered: still the first subscription a while later.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_THAT(log.states(), ElementsAre(RedisState::kConnected));

  // A stopped Redis keeps the connection open but answers no probe.
  redis_.Pause();
  ASSERT_TRUE(log.WaitFor(RedisState::kDegraded)) << "an unanswered probe went unnoticed";
  redis_.Resume();
  ASSERT_TRUE(log.WaitFor(RedisState::kConnected, 2)) << "never connected again";
  EXPECT_EQ(inbox.resubscribed(), 1);
}

}  // namespace
}  // namespace flightcache
