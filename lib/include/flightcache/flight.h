// Flight: a memoized, multi-waiter future for the result of one load.
//
// The producer holds a `Promise<T>`; consumers hold `Future<T>`s. Only the producer can complete
// the flight (a Future has no operation that completes, resets or poisons it). The result — a
// value or an absl::Status — is written once, before any waiter can observe it, and is then
// shared, immutable, by every waiter: `SharedResult<T>` is a shared_ptr to a const StatusOr.
// Completion is a broadcast: every waiter registered before completion is called, and every
// waiter that comes later sees the result at once. Observing readiness (IsReady, Peek) or
// registering a callback never consumes the result; awaiting twice returns the same object.
//
// A Promise destroyed without completing completes its flight with INTERNAL, so a producer that
// forgets to answer (or unwinds through an exception) can never strand its waiters.
//
// Thread-safety: thread-safe. Callbacks run without any flight lock held: on the completing
// thread, or inline in OnComplete() when the flight is already complete.
// Lifetime: the shared state lives as long as any Promise, Future or Subscription refers to it.
//
// Usage:
//   Promise<int> promise;
//   Future<int> future = promise.GetFuture();
//   auto sub = future.OnComplete([](const SharedResult<int>& r) { Use(**r); });
//   promise.Complete(42);                        // wakes `sub`'s callback
//   SharedResult<int> r = future.Await(ctx);     // returns at once: same object as above
#ifndef FLIGHTCACHE_FLIGHT_H_
#define FLIGHTCACHE_FLIGHT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/call_context.h"

namespace flightcache {

template <typename T>
using SharedResult = std::shared_ptr<const absl::StatusOr<T>>;

template <typename T>
SharedResult<T> MakeSharedResult(absl::StatusOr<T> result) {
  return std::make_shared<const absl::StatusOr<T>>(std::move(result));
}

namespace internal {

// What a FlightWaiter needs from a flight, without its value type.
class WaiterTarget {
 public:
  virtual ~WaiterTarget() = default;
  virtual void Leave(uint64_t subscription) = 0;
};

}  // namespace internal

// One caller's membership of a flight. Move-only. Cancel() leaves the flight: the caller's
// callback then runs with CANCELLED (unless the flight already completed: then it runs, is running
// or will run with the result, on a wake worker possibly after Cancel() returned), and if this was
// the last waiter the abandon policy applies. Destroying a FlightWaiter does NOT leave the flight.
class FlightWaiter final {
 public:
  FlightWaiter() = default;
  FlightWaiter(std::shared_ptr<internal::WaiterTarget> target, uint64_t subscription)
      : target_(std::move(target)), subscription_(subscription) {}
  FlightWaiter(FlightWaiter&&) noexcept = default;
  FlightWaiter& operator=(FlightWaiter&&) noexcept = default;

  // Idempotent; a no-op after the callback ran. Call it from one thread at a time (like any
  // other non-const method of a value type); it may race freely with the flight completing.
  void Cancel() {
    if (auto target = std::move(target_)) target->Leave(subscription_);
  }

 private:
  std::shared_ptr<internal::WaiterTarget> target_;
  uint64_t subscription_ = 0;
};

// What happens to a shared load when its last waiter leaves before it is done: kCancel stops it
// (the origin call is cancelled), kFinish lets it run on and store its result for later callers.
enum class AbandonPolicy { kCancel, kFinish };

namespace internal {

// The state one flight's Promise, Futures and Subscriptions share. A subscriber is a `CallbackT`
// stored by value in the flight's table (a SingleFlightGroup stores its waiters' callbacks there
// without wrapping them in another heap-allocated callable); it is called with the result and
// the `context` its caller passes to Complete/Subscribe (none for Promise and Future).
template <typename T, typename CallbackT = absl::AnyInvocable<void(const SharedResult<T>&)>>
class FlightState final {
 public:
  using Callback = CallbackT;
  using Subscribers = absl::flat_hash_map<uint64_t, Callback>;
  static constexpr uint64_t kDelivered = 0;

  // Publishes `result` and wakes every subscriber, on this thread. Returns false (and changes
  // nothing) if the flight was already complete.
  template <typename... Context>
  bool Complete(SharedResult<T> result, const Context&... context) {
    std::optional<Subscribers> to_wake = Publish(result);
    if (!to_wake.has_value()) return false;
    for (auto& [id, callback] : *to_wake) callback(result, context...);
    return true;
  }

  // Publishes `result` and hands back the subscribers to wake, for a caller that wakes them
  // itself (with no lock held, each exactly once). Nullopt (and nothing changes) if the flight
  // was already complete.
  std::optional<Subscribers> Publish(const SharedResult<T>& result) {
    Subscribers to_wake;
    absl::MutexLock lock(&mu_);
    if (result_ != nullptr) return std::nullopt;
    // The release of mu_ orders this write before any reader that takes mu_ (Peek, Subscribe)
    // and before the callbacks the caller runs, so no waiter can see a half-written result.
    result_ = result;
    to_wake.swap(subscribers_);
    return to_wake;
  }

  // Registers `callback`, or calls it inline (with `context`) if the flight is already complete
  // (then returns kDelivered). Otherwise returns an id for Unsubscribe().
  template <typename... Context>
  uint64_t Subscribe(Callback callback, const Context&... context) {
    SharedResult<T> ready;
    {
      absl::MutexLock lock(&mu_);
      if (result_ == nullptr) {
        const uint64_t id = next_id_++;
        subscribers_.emplace(id, std::move(callback));
        return id;
      }
      ready = result_;
    }
    callback(ready, context...);
    return kDelivered;
  }

  // Removes a subscriber that has not been called yet and hands its callback back, so the
  // caller decides how to finish it. Returns nullopt if it was already called (or is being
  // called) by Complete().
  std::optional<Callback> Unsubscribe(uint64_t id) {
    absl::MutexLock lock(&mu_);
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) return std::nullopt;
    std::optional<Callback> callback(std::move(it->second));
    subscribers_.erase(it);
    return callback;
  }

  SharedResult<T> result() const {
    absl::MutexLock lock(&mu_);
    return result_;
  }

  size_t subscriber_count() const {
    absl::MutexLock lock(&mu_);
    return subscribers_.size();
  }

 private:
  mutable absl::Mutex mu_;
  SharedResult<T> result_ ABSL_GUARDED_BY(mu_);
  Subscribers subscribers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

// Converts a MonotonicClock deadline into the wall-clock deadline absl::Mutex waits on.
inline absl::Time WallDeadline(absl::Time system_clock_deadline) {
  if (system_clock_deadline == absl::InfiniteFuture()) return absl::InfiniteFuture();
  return absl::Now() + (system_clock_deadline - MonotonicClock::Get().Now());
}

}  // namespace internal

// A registered completion callback. Move-only. Destroying it does not unsubscribe.
template <typename T>
class Subscription final {
 public:
  Subscription() = default;
  Subscription(std::shared_ptr<internal::FlightState<T>> state, uint64_t id)
      : state_(std::move(state)), id_(id) {}
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&&) noexcept = default;

  // Removes the callback if it has not run; returns true then (it will never run). Returns false
  // if it ran, is running, will run (its flight completed and a wake has it), or was already
  // cancelled.
  bool Cancel() {
    if (state_ == nullptr || id_ == internal::FlightState<T>::kDelivered) return false;
    return state_->Unsubscribe(std::exchange(id_, internal::FlightState<T>::kDelivered))
        .has_value();
  }

 private:
  std::shared_ptr<internal::FlightState<T>> state_;
  uint64_t id_ = internal::FlightState<T>::kDelivered;
};

// The consumer's read-only view of a flight. Copyable; all copies see the same flight.
template <typename T>
class Future final {
 public:
  using Callback = typename internal::FlightState<T>::Callback;

  Future() = default;
  bool valid() const { return state_ != nullptr; }

  bool IsReady() const { return state_->result() != nullptr; }

  // The result if the flight is complete, else null. Never consumes it.
  SharedResult<T> Peek() const { return state_->result(); }

  // Calls `callback` once with the result: inline if already complete, else on completion.
  Subscription<T> OnComplete(Callback callback) const {
    const uint64_t id = state_->Subscribe(std::move(callback));
    return Subscription<T>(state_, id);
  }

  // Blocks until the flight completes or `ctx` ends. In the latter case returns a result holding
  // CANCELLED or DEADLINE_EXCEEDED; the flight itself goes on.
  SharedResult<T> Await(const CallContext& ctx = CallContext()) const {
    if (SharedResult<T> ready = Peek()) return ready;
    struct Wait {
      absl::Mutex mu;
      bool woken ABSL_GUARDED_BY(mu) = false;
      SharedResult<T> result ABSL_GUARDED_BY(mu);
    };
    auto wait = std::make_shared<Wait>();
    Subscription<T> subscription = OnComplete([wait](const SharedResult<T>& r) {
      absl::MutexLock lock(&wait->mu);
      wait->result = r;
      wait->woken = true;
    });
    {
      // Runs inline if the token is already cancelled.
      std::stop_callback on_cancel(ctx.stop_token(), [wait] {
        absl::MutexLock lock(&wait->mu);
        wait->woken = true;
      });
      absl::MutexLock lock(&wait->mu);
      wait->mu.AwaitWithDeadline(absl::Condition(&wait->woken),
                                 internal::WallDeadline(ctx.deadline()));
      if (wait->result != nullptr) return wait->result;
    }
    if (!subscription.Cancel()) {
      // Completion won the race with our give-up: its callback has run or is running now.
      absl::MutexLock lock(&wait->mu);
      wait->mu.Await(absl::Condition(
          +[](SharedResult<T>* r) { return *r != nullptr; }, &wait->result));
      return wait->result;
    }
    absl::Status why = ctx.Check();
    if (why.ok()) why = absl::DeadlineExceededError("call deadline exceeded");
    return MakeSharedResult<T>(std::move(why));
  }

 private:
  template <typename U>
  friend class Promise;
  explicit Future(std::shared_ptr<internal::FlightState<T>> state) : state_(std::move(state)) {}

  std::shared_ptr<internal::FlightState<T>> state_;
};

// The producer's handle: the only way to complete a flight. Move-only.
template <typename T>
class Promise final {
 public:
  Promise() : state_(std::make_shared<internal::FlightState<T>>()) {}
  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&& other) noexcept {
    if (this != &other) {
      AbandonIfPending();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  ~Promise() { AbandonIfPending(); }

  Future<T> GetFuture() const { return Future<T>(state_); }

  // Publishes the result to every waiter. Returns false if already completed (a second
  // completion is rejected and changes nothing).
  bool Complete(absl::StatusOr<T> result) {
    return state_->Complete(MakeSharedResult<T>(std::move(result)));
  }
  bool Complete(SharedResult<T> result) { return state_->Complete(std::move(result)); }

  bool IsComplete() const { return state_->result() != nullptr; }

 private:
  void AbandonIfPending() {
    if (state_ != nullptr && state_->result() == nullptr) {
      state_->Complete(MakeSharedResult<T>(
          absl::InternalError("the producer ended without delivering a result")));
    }
  }

  std::shared_ptr<internal::FlightState<T>> state_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_FLIGHT_H_
