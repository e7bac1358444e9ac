// FakeClock and FakeTimerQueue: time that moves only when a test says so.
//
// FakeTimerQueue::Advance(d) moves the clock forward and runs, in time order and on the calling
// thread, every timer that has come due (including timers scheduled by those callbacks, if due).
// RunEarliest() runs the earliest timer whatever its time: with a clock of the test's own (the
// second constructor), the test drives timers one by one and Advance() is not used.
//
// Thread-safety: thread-safe; timers may be scheduled from any thread while a test advances.
#ifndef FLIGHTCACHE_TESTS_TESTING_FAKE_CLOCK_H_
#define FLIGHTCACHE_TESTS_TESTING_FAKE_CLOCK_H_

#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/clock.h"
#include "flightcache/timer_queue.h"

namespace flightcache::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(1)) : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

class FakeTimerQueue final : public TimerQueue {
 public:
  FakeTimerQueue() = default;
  explicit FakeTimerQueue(absl::Time start) : clock_(start) {}
  // clock() reads `clock`, which must outlive this queue.
  explicit FakeTimerQueue(const Clock& clock) : read_clock_(&clock) {}

  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) override {
    absl::MutexLock lock(&mu_);
    const TimerId id = next_id_++;
    timers_.emplace(std::make_pair(when, id), std::move(fn));
    return id;
  }

  bool Cancel(TimerId id) override {
    absl::AnyInvocable<void()> dropped;
    absl::MutexLock lock(&mu_);
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        dropped = std::move(it->second);
        timers_.erase(it);
        return true;
      }
    }
    return false;
  }

  const Clock& clock() const override { return *read_clock_; }
  FakeClock& fake_clock() { return clock_; }

  // Runs the earliest pending timer (whatever its time); false if there is none.
  bool RunEarliest() {
    absl::AnyInvocable<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      if (timers_.empty()) return false;
      fn = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
    }
    fn();
    return true;
  }

  // Moves time forward by `d`, running every timer that comes due on the way, in order.
  void Advance(absl::Duration d) {
    const absl::Time target = clock_.Now() + d;
    while (true) {
      absl::AnyInvocable<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        if (timers_.empty() || timers_.begin()->first.first > target) break;
        auto it = timers_.begin();
        if (it->first.first > clock_.Now()) clock_.Set(it->first.first);
        fn = std::move(it->second);
        timers_.erase(it);
      }
      fn();
    }
    clock_.Set(target);
  }

  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return timers_.size();
  }

 private:
  FakeClock clock_;
  const Clock* const read_clock_ = &clock_;
  mutable absl::Mutex mu_;
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void()>> timers_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_FAKE_CLOCK_H_
