#include "flightcache/support/signal_watcher.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <ctime>

namespace flightcache::support {
namespace {

sigset_t WatchedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  const sigset_t set = WatchedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this] { Loop(); });
}

SignalWatcher::~SignalWatcher() {
  stopping_.store(true, std::memory_order_relaxed);
  thread_.join();
}

void SignalWatcher::Loop() {
  const sigset_t set = WatchedSignals();
  // A timeout rather than an infinite wait so that the destructor can stop the thread without
  // sending it a signal.
  const timespec poll = {0, 100L * 1000 * 1000};
  while (!stopping_.load(std::memory_order_relaxed)) {
    const int signal = sigtimedwait(&set, nullptr, &poll);
    if (signal > 0) on_signal_(signal);
  }
}

}  // namespace flightcache::support
