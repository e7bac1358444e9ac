// AsyncCancelOrigin: an Origin that, like a real RPC client, acknowledges cancellation
// asynchronously.
//
// A cancelled fetch only records that it was asked to stop and stays in flight at the origin until
// the test answers it; the fake tracks how many fetches are in flight at once, so a test can check
// that a concurrency limit holds for the origin's calls, not only for the caller's decisions.
//
// Thread-safety: thread-safe.
#ifndef FLIGHTCACHE_TESTS_TESTING_ASYNC_CANCEL_ORIGIN_H_
#define FLIGHTCACHE_TESTS_TESTING_ASYNC_CANCEL_ORIGIN_H_

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/origin.h"

namespace flightcache::testing {

class AsyncCancelOrigin final : public Origin {
 public:
  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    auto call = std::make_shared<Call>();
    call->request = request;
    call->done = std::move(done);
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
    }
    call->on_cancel.emplace(std::move(cancel), [raw = call.get()] { raw->cancel_seen = true; });
  }
  std::string Describe() const override { return "async-cancel://"; }

  // Ends fetch `i` (0-based) with `result`; the origin call is no longer in flight.
  void Answer(size_t i, absl::StatusOr<FetchResult> result) {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      call = calls_.at(i);
      --in_flight_;
    }
    FetchCallback done = std::move(call->done);
    done(std::move(result));
  }
  size_t fetches() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  int max_in_flight() const {
    absl::MutexLock lock(&mu_);
    return max_in_flight_;
  }
  bool cancel_seen(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i)->cancel_seen.load();
  }
  std::string key(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i)->request.key;
  }

 private:
  struct Call {
    FetchRequest request;
    FetchCallback done;
    std::atomic<bool> cancel_seen{false};
    std::optional<std::stop_callback<std::function<void()>>> on_cancel;
  };
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_ASYNC_CANCEL_ORIGIN_H_
