// SignalWatcher: turns SIGINT/SIGTERM into a callback on an ordinary thread.
//
// Signal handlers may do almost nothing safely, so the watcher blocks SIGINT and SIGTERM in the
// constructing thread (and so in every thread started after it, which inherit the mask) and
// waits for them with sigtimedwait() on its own thread. `on_signal` runs on that thread, once
// per signal received, with the signal number; it may take locks and start a shutdown.
//
// Thread-safety: construct in main() before any other thread starts (gRPC starts threads when
// the first channel or server is created), or those threads would still receive the signals.
// Lifetime: the destructor stops and joins the watcher thread; signals stay blocked.
//
// Usage:
//   absl::Notification stop;
//   support::SignalWatcher signals([&](int) { if (!stop.HasBeenNotified()) stop.Notify(); });
#ifndef FLIGHTCACHE_SUPPORT_SIGNAL_WATCHER_H_
#define FLIGHTCACHE_SUPPORT_SIGNAL_WATCHER_H_

#include <atomic>
#include <functional>
#include <thread>

namespace flightcache::support {

class SignalWatcher final {
 public:
  explicit SignalWatcher(std::function<void(int signal)> on_signal);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  void Loop();

  std::function<void(int)> on_signal_;
  // Written by the destructor, read by the watcher thread; relaxed is enough because the
  // thread only needs to see it eventually (it polls every 100 ms) and join() orders the rest.
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace flightcache::support

#endif  // FLIGHTCACHE_SUPPORT_SIGNAL_WATCHER_H_
