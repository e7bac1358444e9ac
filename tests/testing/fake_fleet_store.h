// FakeFleetBackend and FakeFleetStore: an in-memory fleet tier for tests of the fleet protocol.
//
// One FakeFleetBackend plays the shared store (Redis): entries and leases, each with an expiry on
// a Clock the test controls (a FakeTimerQueue's clock). Each simulated sidecar gets its own
// FakeFleetStore on that backend. Publish and Invalidate announce to the listener of every other
// store on the backend, never the sender's own, as Redis pub/sub does for the real one.
//
// Each FakeFleetStore is controllable: fail the next N operations or all of them (the callback
// gets UNAVAILABLE and the backend is not touched), hold replies until the test releases them (the
// operation takes effect at once, its callback runs later: to order races by hand), lose the
// announcements sent to it (a broken subscription), switch CanWait() off, trigger
// OnResubscribed(). It counts operations. Callbacks and announcements run inline on the calling
// thread (or on the thread that releases held replies), with no fake lock held.
//
// Thread-safety: thread-safe.
// Lifetime: the backend outlives its stores; a store outlives the FlightCache that uses it.
// Held replies must be released before a FlightCache that waits for them is destroyed.
//
// Usage:
//   FakeTimerQueue timers;
//   FakeFleetBackend backend(timers.clock());
//   FakeFleetStore store_a(backend), store_b(backend);
//   FlightCache a(options, origin_a, timers, nullptr, nullptr, &store_a);
//   store_b.FailNext(1);
#ifndef FLIGHTCACHE_TESTS_TESTING_FAKE_FLEET_STORE_H_
#define FLIGHTCACHE_TESTS_TESTING_FAKE_FLEET_STORE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"
#include "flightcache/fleet_store.h"
#include "flightcache/timer_queue.h"

namespace flightcache::testing {

class FakeFleetStore;

class FakeFleetBackend final {
 public:
  explicit FakeFleetBackend(const Clock& clock) : clock_(clock) {}
  FakeFleetBackend(const FakeFleetBackend&) = delete;
  FakeFleetBackend& operator=(const FakeFleetBackend&) = delete;

  // The live entry for `key`, with the TTL it has left now.
  std::optional<FleetEntry> Entry(const std::string& key) const {
    absl::MutexLock lock(&mu_);
    return LiveEntry(key);
  }
  // The token of the live lease on `key`, if any.
  std::optional<std::string> LeaseHolder(const std::string& key) const {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(key);
    if (it == leases_.end() || it->second.expires <= clock_.Now()) return std::nullopt;
    return it->second.token;
  }
  // Deletes the key's entry and lease, announcing nothing (an operator's DEL, an eviction).
  void Invalidate(const std::string& key) {
    absl::MutexLock lock(&mu_);
    entries_.erase(key);
    leases_.erase(key);
  }
  size_t entry_count() const {
    absl::MutexLock lock(&mu_);
    return entries_.size();
  }

 private:
  friend class FakeFleetStore;
  struct Stored {
    FleetEntry entry;
    absl::Time expires;
  };
  struct Lease {
    std::string token;
    absl::Time expires;
  };

  std::optional<FleetEntry> LiveEntry(const std::string& key) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = entries_.find(key);
    const absl::Time now = clock_.Now();
    if (it == entries_.end() || it->second.expires <= now) return std::nullopt;
    FleetEntry entry = it->second.entry;
    entry.ttl_remaining = it->second.expires - now;
    return entry;
  }
  bool LeaseIs(const std::string& key, const std::string& token) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = leases_.find(key);
    return it != leases_.end() && it->second.expires > clock_.Now() && it->second.token == token;
  }

  // Every store on the backend but `sender`, for announcements.
  std::vector<FakeFleetStore*> Others(const FakeFleetStore* sender) const {
    absl::MutexLock lock(&mu_);
    std::vector<FakeFleetStore*> others;
    for (FakeFleetStore* s : stores_) {
      if (s != sender) others.push_back(s);
    }
    return others;
  }

  const Clock& clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Stored> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::vector<FakeFleetStore*> stores_ ABSL_GUARDED_BY(mu_);
};

class FakeFleetStore final : public FleetStore {
 public:
  enum Op { kRead, kTakeLease, kRenewLease, kPublish, kInvalidate, kOpCount };

  explicit FakeFleetStore(FakeFleetBackend& backend) : backend_(backend) {
    absl::MutexLock lock(&backend_.mu_);
    backend_.stores_.push_back(this);
  }
  ~FakeFleetStore() override {
    absl::MutexLock lock(&backend_.mu_);
    auto& stores = backend_.stores_;
    stores.erase(std::remove(stores.begin(), stores.end(), this), stores.end());
  }
  FakeFleetStore(const FakeFleetStore&) = delete;
  FakeFleetStore& operator=(const FakeFleetStore&) = delete;

  // --- FleetStore ---

  // Waits for listener calls running now, so that none runs after SetListener(nullptr) returns.
  void SetListener(FleetListener* listener) override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &delivering_));
    listener_ = listener;
  }

  bool CanWait() const override { return can_wait_.load(); }

  void Read(const std::string& key, Callback<std::optional<FleetEntry>> done) override {
    if (absl::Status fail = Count(kRead); !fail.ok()) return Reply(std::move(done), fail);
    std::optional<FleetEntry> entry;
    {
      absl::MutexLock lock(&backend_.mu_);
      entry = backend_.LiveEntry(key);
    }
    Reply(std::move(done), std::move(entry));
  }

  void TakeLease(const std::string& key, const std::string& token, absl::Duration ttl,
                 Callback<bool> done) override {
    if (absl::Status fail = Count(kTakeLease); !fail.ok()) return Reply(std::move(done), fail);
    bool taken = false;
    {
      absl::MutexLock lock(&backend_.mu_);
      const absl::Time now = backend_.clock_.Now();
      auto it = backend_.leases_.find(key);
      auto entry = backend_.entries_.find(key);
      const bool entry_there = entry != backend_.entries_.end() && entry->second.expires > now;
      if (!entry_there && (it == backend_.leases_.end() || it->second.expires <= now)) {
        backend_.leases_[key] = {token, now + ttl};
        taken = true;
      }
    }
    Reply(std::move(done), taken);
  }

  void RenewLease(const std::string& key, const std::string& token, absl::Duration ttl,
                  Callback<bool> done) override {
    if (absl::Status fail = Count(kRenewLease); !fail.ok()) return Reply(std::move(done), fail);
    bool renewed = false;
    {
      absl::MutexLock lock(&backend_.mu_);
      if (backend_.LeaseIs(key, token)) {
        backend_.leases_[key].expires = backend_.clock_.Now() + ttl;
        renewed = true;
      }
    }
    Reply(std::move(done), renewed);
  }

  void Publish(const std::string& key, const std::string& token, std::optional<FleetEntry> entry,
               FleetAnnouncement announcement, Callback<bool> done) override {
    if (absl::Status fail = Count(kPublish); !fail.ok()) return Reply(std::move(done), fail);
    bool published = false;
    {
      absl::MutexLock lock(&backend_.mu_);
      if (backend_.LeaseIs(key, token)) {
        if (entry.has_value()) {
          backend_.entries_[key] = {*entry, backend_.clock_.Now() + entry->ttl_remaining};
        }
        backend_.leases_.erase(key);
        published = true;
      }
    }
    if (published) Announce(announcement);
    Reply(std::move(done), published);
  }

  void Invalidate(std::vector<std::string> keys, DoneCallback done) override {
    if (absl::Status fail = Count(kInvalidate); !fail.ok()) return Reply(std::move(done), fail);
    {
      absl::MutexLock lock(&backend_.mu_);
      for (const std::string& key : keys) {
        backend_.entries_.erase(key);
        backend_.leases_.erase(key);
      }
    }
    for (const std::string& key : keys) {
      Announce({.kind = FleetAnnouncement::Kind::kInvalidated, .key = key});
    }
    Reply(std::move(done), absl::OkStatus());
  }

  // --- Controls ---

  // The next `n` operations fail with UNAVAILABLE (after any held ones are released).
  void FailNext(int n) { fail_next_.store(n); }
  // Every operation fails (a store that lost its connection).
  void FailAll(bool fail) { fail_all_.store(fail); }
  void SetCanWait(bool can_wait) { can_wait_.store(can_wait); }

  // While on, operations take effect but their replies are queued; ReleaseHeld() delivers them.
  void Hold(bool hold) {
    absl::MutexLock lock(&mu_);
    holding_ = hold;
  }
  size_t held() const {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  // Delivers up to `n` held replies (all by default), oldest first, on this thread. Returns how
  // many ran.
  size_t ReleaseHeld(size_t n = SIZE_MAX) {
    size_t ran = 0;
    while (ran < n) {
      absl::AnyInvocable<void() &&> op;
      {
        absl::MutexLock lock(&mu_);
        if (held_.empty()) break;
        op = std::move(held_.front());
        held_.pop_front();
      }
      std::move(op)();
      ++ran;
    }
    return ran;
  }

  // Replies run on `queue`'s thread (as timers due at once) instead of inline; null: inline.
  // `queue` must outlive every operation of this store.
  void ReplyOn(TimerQueue* queue) {
    absl::MutexLock lock(&mu_);
    reply_queue_ = queue;
  }

  // While on, announcements sent to this store are lost.
  void DropAnnouncements(bool drop) { drop_announcements_.store(drop); }

  // Tells the listener that announcements may have been missed.
  void Resubscribe() {
    FleetListener* listener = BeginDelivery();
    if (listener != nullptr) listener->OnResubscribed();
    EndDelivery();
  }
  // Delivers `announcement` to this store's own listener (as if another sidecar sent it).
  void Deliver(const FleetAnnouncement& announcement) {
    if (drop_announcements_.load()) return;
    FleetListener* listener = BeginDelivery();
    if (listener != nullptr) listener->OnAnnouncement(announcement);
    EndDelivery();
  }

  int64_t ops(Op op) const { return ops_[op].load(); }
  bool has_listener() const {
    absl::MutexLock lock(&mu_);
    return listener_ != nullptr;
  }

 private:
  // Counts the operation; returns the error it fails with, if it fails.
  absl::Status Count(Op kind) {
    ops_[kind].fetch_add(1);
    if (fail_all_.load())
      return absl::UnavailableError("fake fleet store: failing every operation");
    for (int n = fail_next_.load(); n > 0;) {
      if (fail_next_.compare_exchange_weak(n, n - 1)) {
        return absl::UnavailableError("fake fleet store: failing this operation");
      }
    }
    return absl::OkStatus();
  }

  // Calls `done` with `result` now, or when released if replies are held.
  template <typename Done, typename Result>
  void Reply(Done done, Result result) {
    auto reply = [done = std::move(done), result = std::move(result)]() mutable {
      std::move(done)(std::move(result));
    };
    TimerQueue* queue = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (holding_) {
        held_.push_back(std::move(reply));
        return;
      }
      queue = reply_queue_;
    }
    if (queue != nullptr) {
      queue->RunAfter(absl::ZeroDuration(), std::move(reply));
    } else {
      reply();
    }
  }

  void Announce(const FleetAnnouncement& announcement) {
    for (FakeFleetStore* other : backend_.Others(this)) other->Deliver(announcement);
  }

  FleetListener* BeginDelivery() {
    absl::MutexLock lock(&mu_);
    ++delivering_;
    return listener_;
  }
  void EndDelivery() {
    absl::MutexLock lock(&mu_);
    --delivering_;
  }

  FakeFleetBackend& backend_;
  std::atomic<bool> can_wait_{true};
  std::atomic<bool> fail_all_{false};
  std::atomic<bool> drop_announcements_{false};
  std::atomic<int> fail_next_{0};
  std::atomic<int64_t> ops_[kOpCount] = {};
  mutable absl::Mutex mu_;
  FleetListener* listener_ ABSL_GUARDED_BY(mu_) = nullptr;
  int delivering_ ABSL_GUARDED_BY(mu_) = 0;  // listener calls running now
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  TimerQueue* reply_queue_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<absl::AnyInvocable<void() &&>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_FAKE_FLEET_STORE_H_
