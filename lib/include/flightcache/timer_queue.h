// TimerQueue: run a callback at a point in time, unless cancelled first.
//
// Timers are how the core waits without a thread per wait: load timeouts, hedge delays and the
// simulated origin's latency are all timers. `ThreadTimerQueue` runs every callback on one
// dedicated thread; tests use `FakeTimerQueue` (tests/testing/fake_clock.h), which runs due
// callbacks when the test advances its clock.
//
// Thread-safety: all methods are thread-safe. Callbacks run without any TimerQueue lock held, so
// a callback may schedule or cancel timers. Callbacks must be short and must not block.
//
// Usage:
//   TimerId id = timers.RunAfter(absl::Milliseconds(20), [] { SendHedge(); });
//   ...
//   timers.Cancel(id);  // true if the callback will now never run
#ifndef FLIGHTCACHE_TIMER_QUEUE_H_
#define FLIGHTCACHE_TIMER_QUEUE_H_

#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"

namespace flightcache {

using TimerId = uint64_t;
inline constexpr TimerId kNoTimer = 0;

class TimerQueue {
 public:
  virtual ~TimerQueue() = default;

  // Schedules `fn` to run once at or after `when`. Never runs `fn` inline. Returns a non-zero id.
  virtual TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) = 0;

  // Returns true if the timer was pending and now will never run; false if it already ran, is
  // running, or was cancelled. Does not wait for a running callback.
  virtual bool Cancel(TimerId id) = 0;

  virtual const Clock& clock() const = 0;

  TimerId RunAfter(absl::Duration delay, absl::AnyInvocable<void()> fn) {
    return RunAt(clock().Now() + delay, std::move(fn));
  }
};

// How late a ThreadTimerQueue ran one timer, and for how long its callback held the thread.
struct TimerFiring {
  // From the timer's due time to the moment the thread took it: waiting for the thread (earlier
  // callbacks still running, the thread not scheduled) plus the wake-up's own slack.
  absl::Duration lateness;
  // The callback plus the destruction of its captures: every later timer waits for it.
  absl::Duration callback_duration;
};

// Told about every timer a ThreadTimerQueue runs (not about cancelled ones), on the timer thread,
// after the callback, with no lock held. Must be cheap and must not block: it delays every later
// timer. Must outlive the queue.
class TimerQueueObserver {
 public:
  virtual ~TimerQueueObserver() = default;
  virtual void OnTimerFired(const TimerFiring& firing) = 0;
};

// Runs callbacks on one background thread. An exception thrown by a callback is caught and
// dropped (callbacks must report their own errors), so one bad callback cannot stop the others.
// The destructor drops pending timers and joins the thread. `observer` (may be null) is told the
// lateness and callback duration of each timer run: one extra clock read per timer.
class ThreadTimerQueue final : public TimerQueue {
 public:
  explicit ThreadTimerQueue(const Clock& clock = MonotonicClock::Get(),
                            TimerQueueObserver* observer = nullptr);
  ~ThreadTimerQueue() override;
  ThreadTimerQueue(const ThreadTimerQueue&) = delete;
  ThreadTimerQueue& operator=(const ThreadTimerQueue&) = delete;

  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) override;
  bool Cancel(TimerId id) override;
  const Clock& clock() const override { return clock_; }

  // Number of timers scheduled and not yet run or cancelled.
  size_t pending() const;

 private:
  struct HeapItem {
    absl::Time when;
    TimerId id;
  };
  void Loop();

  const Clock& clock_;
  TimerQueueObserver* const observer_;
  mutable absl::Mutex mu_;
  std::vector<HeapItem> heap_ ABSL_GUARDED_BY(mu_);  // min-heap on `when`
  absl::flat_hash_map<TimerId, absl::AnyInvocable<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_TIMER_QUEUE_H_
