// EventLoop: one thread that waits on file descriptors (epoll) and timers, and runs tasks posted
// from any thread. The fleet tier's Redis connections live on it: hiredis is not thread-safe, so
// every hiredis call is made on this one thread, and gRPC threads only Post() to it.
//
// Thread-safety: Post(), RunSync() and InLoopThread() are thread-safe. Everything else (timers,
// watches) is for the loop thread only (REQUIRES: InLoopThread()), from a task, a timer or a watch
// handler. Tasks, timers and handlers must be short and must not block: they delay each other.
//
// SIGPIPE is blocked on the loop thread: a write to a connection its peer closed fails with
// EPIPE instead of ending the process.
//
// Lifetime: the constructor starts the thread, the destructor stops and joins it; tasks and
// timers still pending then are destroyed without running. Whoever posts tasks or holds timers
// and watches must be gone first (RedisConnection's destructor waits for its own shutdown task).
//
// Usage:
//   EventLoop loop("fleet");
//   loop.Post([&] { EventLoop::TimerId t = loop.RunAfter(absl::Milliseconds(5), [] { ... }); });
#ifndef FLIGHTCACHE_SERVER_FLEET_EVENT_LOOP_H_
#define FLIGHTCACHE_SERVER_FLEET_EVENT_LOOP_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace flightcache {

class EventLoop final {
 public:
  using TimerId = uint64_t;
  using WatchId = uint64_t;
  static constexpr TimerId kNoTimer = 0;
  static constexpr WatchId kNoWatch = 0;

  // `name` names the thread (at most 15 characters are kept).
  explicit EventLoop(std::string name = "fleet-loop");
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs `task` on the loop thread, after the tasks posted before it (FIFO), never inline.
  void Post(absl::AnyInvocable<void() &&> task);

  // Runs `task` on the loop thread and waits until it has run. REQUIRES: !InLoopThread(). For
  // set-up and shutdown (a destructor that must finish its work on the loop), never on a hot path.
  void RunSync(absl::AnyInvocable<void() &&> task);

  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_.load(); }

  // Monotonic time (MonotonicClock), the clock of the timers below.
  static absl::Time Now();

  // Runs `fn` once at or after `when` (the loop wakes with millisecond resolution, rounded up).
  // A timer due now still waits for the current round of events. Returns a non-zero id.
  TimerId RunAt(absl::Time when, absl::AnyInvocable<void() &&> fn);
  TimerId RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> fn) {
    return RunAt(Now() + delay, std::move(fn));
  }
  // True if the timer was pending and now will never run. kNoTimer is allowed.
  bool Cancel(TimerId id);

  // Calls `handler(epoll events)` when `fd` is ready for what SetInterest asked (initially
  // nothing; errors and hang-ups are reported regardless). The fd stays the caller's: Unwatch it
  // before closing it. A handler may Unwatch its own or another watch.
  WatchId Watch(int fd, absl::AnyInvocable<void(uint32_t events)> handler);
  void SetInterest(WatchId id, bool read, bool write);
  void Unwatch(WatchId id);

 private:
  struct Watcher {
    int fd;
    uint32_t events = 0;
    absl::AnyInvocable<void(uint32_t)> handler;
  };

  void Run();
  void Wake();
  // Milliseconds epoll_wait may sleep: until the first timer (rounded up), -1 if none.
  int PollTimeoutMs() const;
  void RunDueTimers();
  void RunPostedTasks();

  const std::string name_;
  const int epoll_fd_;
  const int wake_fd_;
  std::atomic<std::thread::id> thread_id_{};

  absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void() &&>> posted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Loop thread only.
  uint64_t next_id_ = 1;
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void() &&>> timers_;
  absl::flat_hash_map<TimerId, absl::Time> timer_due_;
  absl::flat_hash_map<WatchId, std::unique_ptr<Watcher>> watchers_;
  // Watchers unwatched while events were being dispatched: destroyed after the round, since one
  // of them may be the handler that is running.
  std::vector<std::unique_ptr<Watcher>> unwatched_;

  std::thread thread_;  // last: started once everything above is ready
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_EVENT_LOOP_H_
