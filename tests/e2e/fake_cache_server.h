// FakeCacheServer: an in-process flightcache.v1.Cache with predictable answers, so that the
// client programs (loadgen, cli) are tested end to end without the real server.
//
// Answers by key: "" -> INVALID_ARGUMENT; "missing*" -> NOT_FOUND; "err*" -> UNAVAILABLE;
// "stale*" -> "old-value-of-<key>", STALE by 1.5 s;
// anything else -> "value-of-<key>", LOADED the first time (until invalidated), HIT after.
// With a delay, every Get/BatchGet answers that much later from a timer thread (callback API,
// no thread per call), so clients can hold thousands of calls in flight. HoldUntilInFlight(n)
// holds the first calls until n are in flight at once (or a bound passes), then answers them all:
// whether a client reaches n in flight becomes a yes/no fact, not a sampled peak. Stats reports
// what it served; the grpc.health.v1 service is on, and SetServing(false) turns it NOT_SERVING.
//
// Thread-safety: thread-safe. Lifetime: Shutdown() (or the destructor) stops the server.
#ifndef FLIGHTCACHE_TESTS_E2E_FAKE_CACHE_SERVER_H_
#define FLIGHTCACHE_TESTS_E2E_FAKE_CACHE_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/timer_queue.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/grpc_listener.h"

namespace flightcache::e2e {

class FakeCacheServer final : public flightcache::v1::Cache::CallbackService {
 public:
  static constexpr int64_t kStaleMs = 1500;

  explicit FakeCacheServer(absl::Duration delay = absl::ZeroDuration()) : delay_(delay) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.RegisterService(this);
    absl::StatusOr<GrpcServer> server = StartGrpcServer(builder, "127.0.0.1:0");
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) {
      server_ = std::move(server->server);
      port_ = server->port;
    }
  }
  ~FakeCacheServer() override { Shutdown(); }

  void Shutdown() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      server_->Wait();
      server_.reset();
    }
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

  // Call before the first Get: the first calls are held until `n` are in flight at once, or until
  // `max_hold` after the first one arrived; then all held calls are answered and later calls are
  // answered as usual (after the delay, if any).
  void HoldUntilInFlight(int64_t n, absl::Duration max_hold) {
    absl::MutexLock l(&mu_);
    hold_until_inflight_ = n;
    max_hold_ = max_hold;
  }
  void SetServing(bool serving) { server_->GetHealthCheckService()->SetServingStatus(serving); }

  int64_t gets() const {
    absl::MutexLock l(&mu_);
    return gets_;
  }
  int64_t batch_gets() const {
    absl::MutexLock l(&mu_);
    return batch_gets_;
  }
  // Invalidate calls received.
  int64_t invalidates() const {
    absl::MutexLock l(&mu_);
    return invalidates_;
  }
  // The authorization metadata of the last Invalidate ("" if it had none).
  std::string last_invalidate_authorization() const {
    absl::MutexLock l(&mu_);
    return last_invalidate_authorization_;
  }
  int64_t peak_inflight() const {
    absl::MutexLock l(&mu_);
    return peak_inflight_;
  }
  // Times each key was asked for (Get and BatchGet).
  absl::flat_hash_map<std::string, int64_t> key_counts() const {
    absl::MutexLock l(&mu_);
    return key_counts_;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const flightcache::v1::GetRequest* request,
                                flightcache::v1::GetResponse* response) override {
    flightcache::v1::KeyResult result = Answer(request->key(), /*batch=*/false);
    grpc::Status status =
        result.code() == 0
            ? grpc::Status::OK
            : grpc::Status(static_cast<grpc::StatusCode>(result.code()), result.message());
    response->set_value(result.value());
    response->set_source(result.source());
    response->set_ttl_remaining_ms(result.source() == flightcache::v1::SOURCE_STALE ? 0 : 60000);
    response->set_stale_ms(result.stale_ms());
    return Reply(context, std::move(status));
  }

  grpc::ServerUnaryReactor* BatchGet(grpc::CallbackServerContext* context,
                                     const flightcache::v1::BatchGetRequest* request,
                                     flightcache::v1::BatchGetResponse* response) override {
    {
      absl::MutexLock l(&mu_);
      ++batch_gets_;
    }
    for (const std::string& key : request->keys()) {
      *response->add_results() = Answer(key, /*batch=*/true);
    }
    return Reply(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* Invalidate(grpc::CallbackServerContext* context,
                                       const flightcache::v1::InvalidateRequest* request,
                                       flightcache::v1::InvalidateResponse* response) override {
    int64_t removed = 0;
    {
      absl::MutexLock l(&mu_);
      ++invalidates_;
      const auto auth = context->client_metadata().find("authorization");
      last_invalidate_authorization_ = auth == context->client_metadata().end()
                                           ? std::string()
                                           : std::string(auth->second.data(), auth->second.size());
      for (const std::string& key : request->keys()) {
        removed += static_cast<int64_t>(loaded_.erase(key));
      }
    }
    response->set_removed(removed);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const flightcache::v1::StatsRequest*,
                                  flightcache::v1::StatsResponse* response) override {
    {
      absl::MutexLock l(&mu_);
      response->set_requests(requests_);
      response->set_hits(hits_);
      response->set_misses(misses_);
      response->set_loads_started(misses_);
      response->set_loads_succeeded(misses_);
      response->set_origin_fetches(misses_);
      response->set_entries(static_cast<int64_t>(loaded_.size()));
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  flightcache::v1::KeyResult Answer(const std::string& key, bool batch) {
    flightcache::v1::KeyResult r;
    r.set_key(key);
    absl::MutexLock l(&mu_);
    if (!batch) ++gets_;
    ++requests_;
    ++key_counts_[key];
    if (key.empty()) {
      r.set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      r.set_message("empty key");
    } else if (absl::StartsWith(key, "missing")) {
      r.set_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
      r.set_message("no such key");
    } else if (absl::StartsWith(key, "stale")) {
      r.set_value("old-value-of-" + key);
      r.set_source(flightcache::v1::SOURCE_STALE);
      r.set_stale_ms(kStaleMs);
    } else if (absl::StartsWith(key, "err")) {
      r.set_code(static_cast<int>(grpc::StatusCode::UNAVAILABLE));
      r.set_message("origin: injected error");
    } else {
      r.set_value("value-of-" + key);
      if (loaded_.insert(key).second) {
        ++misses_;
        r.set_source(flightcache::v1::SOURCE_LOADED);
      } else {
        ++hits_;
        r.set_source(flightcache::v1::SOURCE_HIT);
      }
    }
    return r;
  }

  grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, grpc::Status status) {
    auto* reactor = context->DefaultReactor();
    if (Hold(reactor, status)) return reactor;
    if (delay_ == absl::ZeroDuration()) {
      reactor->Finish(std::move(status));
      return reactor;
    }
    {
      absl::MutexLock l(&mu_);
      peak_inflight_ = std::max(peak_inflight_, ++inflight_);
    }
    // The default reactor lives until Finish; the call cannot end earlier without a cancel,
    // and Finish after a cancel is allowed.
    timers_.RunAfter(delay_, [this, reactor, status = std::move(status)]() mutable {
      {
        absl::MutexLock l(&mu_);
        --inflight_;
      }
      reactor->Finish(std::move(status));
    });
    return reactor;
  }

  // Whether the call was held (see HoldUntilInFlight); the n-th held call answers them all.
  bool Hold(grpc::ServerUnaryReactor* reactor, const grpc::Status& status) {
    bool first = false;
    bool reached = false;
    absl::Duration max_hold;
    {
      absl::MutexLock l(&mu_);
      if (hold_until_inflight_ == 0 || hold_released_) return false;
      peak_inflight_ = std::max(peak_inflight_, ++inflight_);
      held_.emplace_back(reactor, status);
      first = held_.size() == 1;
      reached = static_cast<int64_t>(held_.size()) >= hold_until_inflight_;
      max_hold = max_hold_;
    }
    if (first) timers_.RunAfter(max_hold, [this] { ReleaseHeld(); });
    if (reached) ReleaseHeld();
    return true;
  }

  void ReleaseHeld() {
    std::vector<std::pair<grpc::ServerUnaryReactor*, grpc::Status>> held;
    {
      absl::MutexLock l(&mu_);
      hold_released_ = true;
      held.swap(held_);
      inflight_ -= static_cast<int64_t>(held.size());
    }
    for (auto& [reactor, status] : held) reactor->Finish(std::move(status));
  }

  const absl::Duration delay_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> loaded_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> key_counts_ ABSL_GUARDED_BY(mu_);
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t gets_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t batch_gets_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t invalidates_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_invalidate_authorization_ ABSL_GUARDED_BY(mu_);
  int64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t peak_inflight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hold_until_inflight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration max_hold_ ABSL_GUARDED_BY(mu_);
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<grpc::ServerUnaryReactor*, grpc::Status>> held_ ABSL_GUARDED_BY(mu_);
  // Last, so destroyed first: its thread is joined before the state its timers touch goes away.
  ThreadTimerQueue timers_;
};

}  // namespace flightcache::e2e

#endif  // FLIGHTCACHE_TESTS_E2E_FAKE_CACHE_SERVER_H_
