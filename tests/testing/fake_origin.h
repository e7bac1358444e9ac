// FakeOrigin: an Origin whose fetches the test answers by hand.
//
// Every Fetch() is recorded as a PendingFetch; the test completes it with Answer(i, result), or
// sets `auto_answer` to answer at once. Cancellation is recorded: when a fetch's stop token fires
// the fake answers CANCELLED (as a real origin would) and counts it.
//
// Thread-safety: thread-safe.
#ifndef FLIGHTCACHE_TESTS_TESTING_FAKE_ORIGIN_H_
#define FLIGHTCACHE_TESTS_TESTING_FAKE_ORIGIN_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/origin.h"

namespace flightcache::testing {

class FakeOrigin final : public Origin {
 public:
  using AutoAnswer = std::function<absl::StatusOr<FetchResult>(const FetchRequest&)>;

  // `name` is what Describe() returns (a ReplicaSet tells its members apart by it).
  explicit FakeOrigin(std::string name = "fake://") : name_(std::move(name)) {}

  // When set, every fetch is answered inline with this function's result.
  void set_auto_answer(AutoAnswer answer) {
    absl::MutexLock lock(&mu_);
    auto_answer_ = std::move(answer);
  }

  // When set, runs on the cancelling thread each time a fetch's stop token fires, before the
  // fake answers CANCELLED: a test can make cancelling slow, as gRPC's TryCancel can be under load.
  using CancelHook = std::function<void(const FetchRequest&)>;
  void set_cancel_hook(CancelHook hook) {
    absl::MutexLock lock(&mu_);
    cancel_hook_ = std::move(hook);
  }

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    fetches_.fetch_add(1);
    AutoAnswer answer;
    {
      absl::MutexLock lock(&mu_);
      answer = auto_answer_;
    }
    if (answer) {
      done(answer(request));
      return;
    }
    auto call = std::make_shared<Call>();
    call->request = request;
    call->done = std::move(done);
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
    }
    // A raw pointer: `calls_` owns the call, and the call owns this stop_callback.
    call->on_cancel.emplace(std::move(cancel), [this, raw = call.get()] {
      CancelHook hook;
      {
        absl::MutexLock lock(&mu_);
        hook = cancel_hook_;
      }
      if (hook) hook(raw->request);
      if (Finish(*raw, absl::CancelledError("fake origin: fetch cancelled"))) {
        cancellations_.fetch_add(1);
      }
    });
  }

  std::string Describe() const override { return name_; }

  // Answers fetch number `i` (0-based, in call order). Returns false if it was already answered
  // (e.g. cancelled).
  bool Answer(size_t i, absl::StatusOr<FetchResult> result) {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      if (i >= calls_.size()) return false;
      call = calls_[i];
    }
    return Finish(*call, std::move(result));
  }
  bool AnswerValue(size_t i, std::string value, absl::Duration ttl = absl::ZeroDuration()) {
    return Answer(i, FetchResult{std::move(value), ttl});
  }

  // Waits until at least `n` fetches were made (for tests that answer from another thread).
  // False if `timeout` passed first.
  [[nodiscard]] bool WaitForFetches(size_t n, absl::Duration timeout = absl::Seconds(30)) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return calls_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

  FetchRequest request(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i)->request;
  }
  bool cancelled(size_t i) const {
    absl::MutexLock lock(&mu_);
    return calls_.at(i)->cancelled.load();
  }
  size_t pending_calls() const {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& c : calls_) n += c->answered.load() ? 0 : 1;
    return n;
  }
  int64_t fetches() const { return fetches_.load(); }
  int64_t cancellations() const { return cancellations_.load(); }

 private:
  struct Call {
    FetchRequest request;
    absl::Mutex mu;
    FetchCallback done ABSL_GUARDED_BY(mu);
    std::atomic<bool> answered{false};
    std::atomic<bool> cancelled{false};
    std::optional<std::stop_callback<std::function<void()>>> on_cancel;
  };

  static bool Finish(Call& call, absl::StatusOr<FetchResult> result) {
    FetchCallback done;
    {
      absl::MutexLock lock(&call.mu);
      if (call.answered.exchange(true)) return false;
      if (absl::IsCancelled(result.status())) call.cancelled = true;
      done = std::move(call.done);
    }
    done(std::move(result));
    return true;
  }

  const std::string name_;
  mutable absl::Mutex mu_;
  AutoAnswer auto_answer_ ABSL_GUARDED_BY(mu_);
  CancelHook cancel_hook_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> fetches_{0};
  std::atomic<int64_t> cancellations_{0};
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_FAKE_ORIGIN_H_
