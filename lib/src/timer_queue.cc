#include "flightcache/timer_queue.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace flightcache {
namespace {

// std::push_heap builds a max-heap; this order makes the earliest deadline the top.
struct LaterFirst {
  template <typename T>
  bool operator()(const T& a, const T& b) const {
    return a.when > b.when || (a.when == b.when && a.id > b.id);
  }
};

}  // namespace

ThreadTimerQueue::ThreadTimerQueue(const Clock& clock) : clock_(clock) {
  thread_ = std::thread([this] { Loop(); });
}

ThreadTimerQueue::~ThreadTimerQueue() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  // Pending callbacks are destroyed here, outside the lock: their captures may own objects whose
  // destructors call back into timers (through Cancel) and would otherwise deadlock.
  absl::flat_hash_map<TimerId, absl::AnyInvocable<void()>> dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped.swap(callbacks_);
  }
}

TimerId ThreadTimerQueue::RunAt(absl::Time when, absl::AnyInvocable<void()> fn) {
  absl::MutexLock lock(&mu_);
  const TimerId id = next_id_++;
  callbacks_.emplace(id, std::move(fn));
  heap_.push_back({when, id});
  std::push_heap(heap_.begin(), heap_.end(), LaterFirst());
  return id;
}

bool ThreadTimerQueue::Cancel(TimerId id) {
  absl::AnyInvocable<void()> dropped;  // destroyed after the lock is released
  absl::MutexLock lock(&mu_);
  auto it = callbacks_.find(id);
  if (it == callbacks_.end()) return false;
  dropped = std::move(it->second);
  callbacks_.erase(it);
  return true;  // the heap entry is skipped lazily when it comes due
}

size_t ThreadTimerQueue::pending() const {
  absl::MutexLock lock(&mu_);
  return callbacks_.size();
}

void ThreadTimerQueue::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    if (heap_.empty()) {
      mu_.Await(absl::Condition(
          +[](ThreadTimerQueue* q)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(q->mu_) { return q->stopping_ || !q->heap_.empty(); },
          this));
      continue;
    }
    const HeapItem top = heap_.front();
    const absl::Time now = clock_.Now();
    if (top.when > now) {
      // Wake early when an earlier timer is scheduled or we are stopping.
      const size_t size_before = heap_.size();
      const TimerId front_id = top.id;
      auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || heap_.size() != size_before || heap_.front().id != front_id;
      };
      mu_.AwaitWithTimeout(absl::Condition(&changed), top.when - now);
      continue;
    }
    std::pop_heap(heap_.begin(), heap_.end(), LaterFirst());
    heap_.pop_back();
    auto it = callbacks_.find(top.id);
    if (it == callbacks_.end()) continue;  // cancelled
    absl::AnyInvocable<void()> fn = std::move(it->second);
    callbacks_.erase(it);
    mu_.Unlock();
    try {
      fn();
    } catch (...) {
      // A timer callback must report its own errors; swallowing here keeps the queue alive.
    }
    fn = nullptr;  // destroy captures outside the lock
    mu_.Lock();
  }
}

}  // namespace flightcache
