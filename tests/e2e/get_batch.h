// GetBatch: many flightcache.v1.Cache/Get calls in flight at once from one test process, on
// gRPC's callback API (no thread per call), spread round-robin over several stubs (channels).
//
// Thread-safety: construct, wait and read from one test thread; the callbacks only write their
// own call's slot and the counter.
// Lifetime: WaitAll() must return true before the batch is destroyed (pending callbacks point
// into it).
//
// Usage:
//   GetBatch batch(stubs, std::vector<std::string>(1000, "hot"), absl::Seconds(10));
//   ASSERT_TRUE(batch.WaitAll(absl::Seconds(60))) << "only " << batch.done();
//   for (const auto& call : batch.calls()) EXPECT_TRUE(call->status.ok());
#ifndef FLIGHTCACHE_TESTS_E2E_GET_BATCH_H_
#define FLIGHTCACHE_TESTS_E2E_GET_BATCH_H_

#include <grpcpp/client_context.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/v1/cache.grpc.pb.h"

namespace flightcache::e2e {

inline void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
}

// Many Gets in flight at once on the callback API; each writes only its own slot.
class GetBatch final {
 public:
  struct Call {
    grpc::ClientContext context;
    v1::GetRequest request;
    v1::GetResponse response;
    grpc::Status status;
  };

  // Starts one Get per key, spread round-robin over `stubs`, each with its own `timeout`.
  GetBatch(const std::vector<std::unique_ptr<v1::Cache::Stub>>& stubs,
           const std::vector<std::string>& keys, absl::Duration timeout) {
    calls_.reserve(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      auto call = std::make_unique<Call>();
      SetTimeout(call->context, timeout);
      call->request.set_key(keys[i]);
      calls_.push_back(std::move(call));
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      Call* c = calls_[i].get();
      stubs[i % stubs.size()]->async()->Get(&c->context, &c->request, &c->response,
                                            [this, c](grpc::Status status) {
                                              c->status = std::move(status);
                                              absl::MutexLock lock(&mu_);
                                              ++done_;
                                            });
    }
  }

  // Waits (bounded) until every call finished; false if some did not. Must return true before
  // the batch is destroyed, as pending callbacks point into it.
  bool WaitAll(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const int want = static_cast<int>(calls_.size());
    auto all_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ == want; };
    return mu_.AwaitWithTimeout(absl::Condition(&all_done), timeout);
  }

  int done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }

  const std::vector<std::unique_ptr<Call>>& calls() const { return calls_; }

 private:
  std::vector<std::unique_ptr<Call>> calls_;
  absl::Mutex mu_;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flightcache::e2e

#endif  // FLIGHTCACHE_TESTS_E2E_GET_BATCH_H_
