// Runner: drives a Target with calls from a Workload and records them — the "runner" third of
// the load generator. Three modes:
//
// Closed and open loop take each call's kind (Get, BatchGet, Invalidate) and keys from the
// Workload, and its deadline from `deadline` or, with `max_deadline`, uniformly at random.
//
//   closed  `concurrency` callers, each sending its next call as soon as the previous answered.
//           Latency runs from the actual send.
//   open    calls leave on a fixed schedule (`rate` per second, evenly spaced or Poisson), no
//           matter how slowly the target answers. Latency runs from the *scheduled* send time,
//           so a stall in the target, in the client or at the `max_inflight` cap shows up in
//           the latency of every call it delayed (no coordinated omission, as in wrk2).
//   herd    `waves` times: `herd_size` Get calls for one fresh cold key, sent at once; the next
//           wave starts when the last call of the previous one has answered. Latency runs from
//           the wave's start.
//
// The runner never blocks a thread per call. Sends happen on the caller of Start() and on the
// TimerQueue's thread (open-loop pacing, herd waves); closed-loop callers send their next call
// from the completion callback, with a trampoline so that a Target answering inline cannot
// recurse without bound. Time comes from `timers.clock()`, so tests drive it with
// FakeTimerQueue.
//
// Thread-safety: Start() once, then Wait() from one thread; Stop() and inflight() from any.
// Lifetime: the Workload, Target, recorder and timer queue must outlive the Runner; the Runner
// must outlive the end of Wait() (every call has answered by then).
//
// Usage:
//   Runner runner(options, workload, target, recorder, timers);
//   runner.Start();
//   RunResult result = runner.Wait();
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_RUNNER_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/loadgen/recorder.h"
#include "client/loadgen/target.h"
#include "client/loadgen/workload.h"
#include "flightcache/timer_queue.h"

namespace flightcache::loadgen {

enum class LoopMode { kClosed, kOpen, kHerd };

struct RunnerOptions {
  LoopMode mode = LoopMode::kClosed;
  int concurrency = 64;           // closed loop: calls in flight
  double rate = 0;                // open loop: calls per second
  bool poisson_arrivals = false;  // open loop: exponential gaps instead of even spacing
  int64_t max_inflight = 10000;   // open loop: calls beyond this wait (their latency still counts)
  absl::Duration duration = absl::Seconds(10);  // InfiniteDuration(): until max_requests
  int64_t max_requests = 0;  // closed/open: stop after this many calls; 0 = no limit
  absl::Duration deadline = absl::Seconds(1);  // per call
  // Closed/open: when > 0, each call's deadline is drawn uniformly from (0, max_deadline]
  // instead of `deadline` (callers that give up at every stage of a load).
  absl::Duration max_deadline = absl::ZeroDuration();
  int herd_size = 100;
  int waves = 5;
  uint64_t seed = 1;  // Poisson gaps and random deadlines

  absl::Status Validate() const;
};

struct RunResult {
  absl::Duration elapsed;  // Start() until the last answer
  int64_t calls_sent = 0;
  int64_t late_sends = 0;       // open loop: sent > 1 ms after their scheduled time
  absl::Duration max_send_lag;  // open loop
};

class Runner final {
 public:
  // REQUIRES: options.Validate().ok().
  Runner(RunnerOptions options, Workload& workload, Target& target, LatencyRecorder& recorder,
         TimerQueue& timers);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Begins sending. Closed loop: sends the first `concurrency` calls on this thread.
  void Start();
  // Blocks until sending has ended (duration, max_requests, waves or Stop()) and every call
  // sent has answered.
  RunResult Wait();
  // Ends the run early: no new calls are sent; calls in flight still finish and are recorded.
  void Stop();

  int64_t inflight() const { return inflight_.load(std::memory_order_relaxed); }
  absl::Time start_time() const { return start_; }

 private:
  struct Slot;

  bool ClaimCall();
  CallSpec NextCall();
  // Records the end of the run; returns true for the one caller that must then call
  // done_.Notify() — after releasing mu_, as the very last touch of `this`, because Wait() may
  // return and the Runner be destroyed as soon as it is notified.
  bool MarkFinishedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Closed loop.
  void IssueFrom(Slot& slot);
  void SlotDone(Slot& slot, absl::Time sent, CallKind kind, const std::vector<ItemResult>& results);

  // Open loop.
  void Tick();
  void ScheduleTickLocked(absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdvanceScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OpenDone(absl::Time scheduled, CallKind kind, const std::vector<ItemResult>& results);

  // Herd.
  void StartWave(int wave);
  void HerdDone(int wave, absl::Time wave_start, const std::vector<ItemResult>& results);

  const RunnerOptions options_;
  Workload& workload_;
  Target& target_;
  LatencyRecorder& recorder_;
  TimerQueue& timers_;
  const Clock& clock_;

  absl::Time start_;  // written by Start() before any call is sent; read-only afterwards
  absl::Time end_;    // start_ + duration

  // Relaxed atomics: counters and flags that need no ordering with other memory (the lock or
  // the Target's own synchronization orders the data they describe).
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> inflight_{0};
  std::atomic<int64_t> claimed_{0};  // calls claimed against max_requests
  std::atomic<int64_t> sent_{0};

  // Closed loop.
  std::vector<std::unique_ptr<Slot>> slots_;
  // Herd: calls of the current wave still to answer (acq_rel: the last one starts the next wave).
  std::atomic<int> herd_remaining_{0};

  absl::Notification done_;  // no more sends and every call answered
  mutable absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time finished_at_ ABSL_GUARDED_BY(mu_);
  int active_slots_ ABSL_GUARDED_BY(mu_) = 0;  // closed loop
  // Open loop schedule.
  int64_t next_index_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time next_time_ ABSL_GUARDED_BY(mu_);
  bool sending_done_ ABSL_GUARDED_BY(mu_) = false;
  int64_t open_inflight_ ABSL_GUARDED_BY(mu_) = 0;
  bool blocked_on_cap_ ABSL_GUARDED_BY(mu_) = false;
  TimerId tick_timer_ ABSL_GUARDED_BY(mu_) = kNoTimer;
  int64_t late_sends_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration max_send_lag_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);  // Poisson gaps and random deadlines
};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_RUNNER_H_
