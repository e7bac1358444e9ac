// TestOrigin: a real flightcache.v1.Origin gRPC server on loopback, for integration tests.
//
// It listens on 127.0.0.1 with port 0 (a free port: see port() / url()), answers Fetch on gRPC's
// callback API, and lets a test script what each fetch does and observe what the server did:
//
//   Behaviour (per key, a default, or a script function that sees key, attempt and the fetch's
//   1-based number for that key): answer after `latency` (a timer, not a sleeping thread), with
//   `value` (default: DefaultValue(key, nth) = "<key>#<nth>", so a re-fetch is visible), `ttl_ms`,
//   or a non-OK `status`; or `hold` the call until the test calls Release(key) / ReleaseAll().
//   Precedence: script (if set) > per-key behaviour > default behaviour.
//
//   Observation: fetches (total and per key), concurrent fetches and their peak, cancellations
//   (calls the client cancelled — its ClientContext::TryCancel or its deadline — while they were
//   still unanswered, seen through the reactor's OnCancel), and a record of every fetch (key,
//   attempt, the call's deadline, how it ended). WaitFor*() block with a timeout until a count is
//   reached, so tests need no sleeps.
//
// A held call keeps the behaviour it was fetched with; Release() answers it at once (its latency
// is not applied again). Stop() (and the destructor) answers every pending call UNAVAILABLE and
// shuts the server down, after which the port refuses connections ("origin down").
//
// Thread-safety: thread-safe. Lifetime: stop (or destroy) the TestOrigin after the servers that
// call it, or expect their fetches to fail with UNAVAILABLE.
//
// Usage:
//   auto origin = TestOrigin::Start();
//   origin->SetBehavior("slow", {.latency = absl::Milliseconds(300)});
//   origin->SetBehavior("held", {.hold = true});
//   config.origin = origin->url();
//   ...
//   ASSERT_TRUE(origin->WaitForHeld("held", 1));
//   origin->Release("held");
//   EXPECT_EQ(origin->fetches("held"), 1);
#ifndef FLIGHTCACHE_TESTS_TESTING_TEST_ORIGIN_H_
#define FLIGHTCACHE_TESTS_TESTING_TEST_ORIGIN_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/timer_queue.h"

namespace flightcache::testing {

struct OriginBehavior {
  absl::Duration latency = absl::ZeroDuration();
  std::optional<std::string> value;  // nothing: TestOrigin::DefaultValue(key, nth)
  int64_t ttl_ms = 0;
  grpc::Status status = grpc::Status::OK;  // non-OK: answer with this status, no value
  bool hold = false;                       // wait for Release(key) / ReleaseAll()
};

// How one fetch went.
struct FetchRecord {
  std::string key;
  uint32_t attempt = 0;
  int64_t nth = 0;                               // 1-based number of this key's fetch
  absl::Time deadline = absl::InfiniteFuture();  // the call's deadline (wall-clock time)
  enum class End { kPending, kAnswered, kCancelled, kStopped } end = End::kPending;
  grpc::StatusCode code = grpc::StatusCode::OK;  // what it answered (when kAnswered)
};

class TestOrigin final {
 public:
  using Script =
      std::function<OriginBehavior(const std::string& key, uint32_t attempt, int64_t nth)>;

  // Starts serving on `host`:`port` (0: a free port; pass an earlier origin's port() to bring
  // a stopped origin back), over TLS with `credentials` (e.g. TlsListenerCredentials'), else
  // plaintext. `host` is an address, "[::1]" for IPv6. Aborts (CHECK-style) if the server cannot
  // start.
  static std::unique_ptr<TestOrigin> Start(
      int port = 0, std::shared_ptr<grpc::ServerCredentials> credentials = nullptr,
      const std::string& host = "127.0.0.1");
  ~TestOrigin();
  TestOrigin(const TestOrigin&) = delete;
  TestOrigin& operator=(const TestOrigin&) = delete;

  int port() const { return port_; }
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  std::string url() const { return "grpc://" + address(); }       // for ServerConfig::origin
  std::string tls_url() const { return "grpcs://" + address(); }  // when started with TLS

  static std::string DefaultValue(const std::string& key, int64_t nth) {
    return key + "#" + std::to_string(nth);
  }

  void SetDefaultBehavior(OriginBehavior behavior);
  void SetBehavior(const std::string& key, OriginBehavior behavior);
  void SetScript(Script script);  // an empty Script removes it
  void ClearBehaviors();          // per-key behaviours, script and default

  // Answers the held calls of `key` (or all) now. Returns how many it answered.
  int Release(const std::string& key);
  int ReleaseAll();

  // Answers every pending call UNAVAILABLE and stops the server. Idempotent.
  void Stop();

  int64_t fetches() const;
  int64_t fetches(const std::string& key) const;
  int64_t cancellations() const;
  int64_t cancellations(const std::string& key) const;
  int64_t concurrent() const;       // fetches arrived and not yet answered or cancelled
  int64_t peak_concurrent() const;  // the most concurrent() has been
  int64_t held(const std::string& key) const;
  std::vector<FetchRecord> records() const;
  // Zeroes the counters (not the per-key `nth` numbering) and sets the peak to concurrent().
  void ResetCounters();

  // Each returns true once the condition holds, false if `timeout` passed first.
  bool WaitForFetches(int64_t n, absl::Duration timeout = absl::Seconds(10)) const;
  bool WaitForFetches(const std::string& key, int64_t n,
                      absl::Duration timeout = absl::Seconds(10)) const;
  bool WaitForHeld(const std::string& key, int64_t n,
                   absl::Duration timeout = absl::Seconds(10)) const;
  bool WaitForCancellations(int64_t n, absl::Duration timeout = absl::Seconds(10)) const;
  bool WaitForIdle(absl::Duration timeout = absl::Seconds(10)) const;  // concurrent() == 0

 private:
  class Service;
  class FetchReactor;
  struct Call;
  TestOrigin();

  // Called by the reactor (from gRPC threads).
  void OnFetch(FetchReactor* reactor, const std::string& key, uint32_t attempt,
               absl::Time deadline);
  void OnCancel(FetchReactor* reactor);
  // Answers call `id` with its behaviour, if it is still pending.
  void Answer(uint64_t id);
  bool WaitFor(absl::Duration timeout, std::function<bool()> condition) const
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  OriginBehavior default_behavior_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, OriginBehavior> behaviors_ ABSL_GUARDED_BY(mu_);
  Script script_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Call> calls_ ABSL_GUARDED_BY(mu_);  // pending calls by id
  absl::flat_hash_map<std::string, int64_t> nth_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> key_fetches_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> key_cancellations_ ABSL_GUARDED_BY(mu_);
  std::vector<FetchRecord> records_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cancellations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t peak_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  std::unique_ptr<ThreadTimerQueue> timers_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string host_;
  int port_ = 0;
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_TEST_ORIGIN_H_
