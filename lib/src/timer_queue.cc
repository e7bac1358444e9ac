#include "flightcache/timer_queue.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace flightcache {
namespace {

// Cancelled timers leave their heap entry behind (removing from the middle of a heap is O(n)).
// Once stale entries outnumber live ones (plus this slack), Cancel() rebuilds the heap: O(n)
// every ~n cancellations, so amortised O(1), and the heap stays O(live timers) instead of
// O(timers scheduled within the longest delay).
constexpr size_t kMinStaleBeforeCompaction = 1024;

// std::push_heap builds a max-heap; this order makes the earliest deadline the top.
struct LaterFirst {
  template <typename T>
  bool operator()(const T& a, const T& b) const {
    return a.when > b.when || (a.when == b.when && a.id > b.id);
  }
};

}  // namespace

ThreadTimerQueue::ThreadTimerQueue(const Clock& clock, TimerQueueObserver* observer)
    : clock_(clock), observer_(observer) {
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
  // The heap entry is skipped lazily when it comes due, unless stale entries pile up.
  if (heap_.size() > 2 * callbacks_.size() + kMinStaleBeforeCompaction) {
    std::erase_if(heap_, [this](const HeapItem& item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !callbacks_.contains(item.id);
    });
    std::make_heap(heap_.begin(), heap_.end(), LaterFirst());
    if (heap_.capacity() > 4 * heap_.size() + kMinStaleBeforeCompaction) heap_.shrink_to_fit();
  }
  return true;
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
      // Wake early only when the front changes (an earlier timer, or a compaction) or we are
      // stopping: not on every RunAt(), which would cost a context switch per scheduled timer.
      const TimerId front_id = top.id;
      auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || heap_.empty() || heap_.front().id != front_id;
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
    if (observer_ != nullptr) {
      // `now` was read when the timer was taken: lateness costs no extra clock read.
      observer_->OnTimerFired(
          {.lateness = now - top.when, .callback_duration = clock_.Now() - now});
    }
    mu_.Lock();
  }
}

}  // namespace flightcache
