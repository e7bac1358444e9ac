#include "server/fleet/event_loop.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "flightcache/clock.h"
#include "spdlog/spdlog.h"

namespace flightcache {
namespace {

// The wake-up eventfd's epoll_event data; watch ids start at 1.
constexpr uint64_t kWakeData = 0;

int CheckedFd(int fd, const char* what) {
  if (fd < 0) {
    // No loop, no fleet tier: this is a broken environment, not a Redis failure.
    spdlog::critical("fleet event loop: {} failed: {}", what, std::strerror(errno));
    std::abort();
  }
  return fd;
}

}  // namespace

EventLoop::EventLoop(std::string name)
    : name_(std::move(name)),
      epoll_fd_(CheckedFd(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      wake_fd_(CheckedFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd")) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeData;
  CheckedFd(epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event), "epoll_ctl(eventfd)");
  thread_ = std::thread([this] { Run(); });
}

EventLoop::~EventLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  thread_.join();
  close(wake_fd_);
  close(epoll_fd_);
}

absl::Time EventLoop::Now() { return MonotonicClock::Get().Now(); }

void EventLoop::Post(absl::AnyInvocable<void() &&> task) {
  bool was_empty = false;
  {
    absl::MutexLock lock(&mu_);
    was_empty = posted_.empty();
    posted_.push_back(std::move(task));
  }
  // A non-empty queue has a wake-up on its way already.
  if (was_empty) Wake();
}

void EventLoop::RunSync(absl::AnyInvocable<void() &&> task) {
  assert(!InLoopThread());
  // A Mutex and a flag rather than an absl::Notification: the tsan preset's annotations of
  // Debian's Abseil cover Mutex calls made from our code (tests/testing/tsan_absl_sync.cc), not
  // the Mutex inside Notification.
  absl::Mutex mu;
  bool done = false;
  Post([&] {
    std::move(task)();
    absl::MutexLock lock(&mu);
    done = true;
  });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&done));
}

void EventLoop::Wake() {
  const uint64_t one = 1;
  // EAGAIN only when the counter is near overflow: the loop is awake anyway.
  [[maybe_unused]] const ssize_t n = write(wake_fd_, &one, sizeof(one));
}

EventLoop::TimerId EventLoop::RunAt(absl::Time when, absl::AnyInvocable<void() &&> fn) {
  const TimerId id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  timer_due_.emplace(id, when);
  return id;
}

bool EventLoop::Cancel(TimerId id) {
  const auto it = timer_due_.find(id);
  if (it == timer_due_.end()) return false;
  timers_.erase(std::make_pair(it->second, id));
  timer_due_.erase(it);
  return true;
}

EventLoop::WatchId EventLoop::Watch(int fd, absl::AnyInvocable<void(uint32_t events)> handler) {
  const WatchId id = next_id_++;
  epoll_event event{};
  event.events = 0;
  event.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    // Only on a bad fd or out of memory: the handler hears of it as an error event.
    spdlog::error("fleet event loop: epoll_ctl(ADD, {}) failed: {}", fd, std::strerror(errno));
  }
  watchers_.emplace(id, std::make_unique<Watcher>(Watcher{fd, 0, std::move(handler)}));
  return id;
}

void EventLoop::SetInterest(WatchId id, bool read, bool write) {
  const auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  const uint32_t events = (read ? EPOLLIN : 0u) | (write ? EPOLLOUT : 0u);
  if (it->second->events == events) return;
  it->second->events = events;
  epoll_event event{};
  event.events = events;
  event.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, it->second->fd, &event) != 0) {
    spdlog::error("fleet event loop: epoll_ctl(MOD, {}) failed: {}", it->second->fd,
                  std::strerror(errno));
  }
}

void EventLoop::Unwatch(WatchId id) {
  const auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second->fd, nullptr);
  unwatched_.push_back(std::move(it->second));
  watchers_.erase(it);
}

int EventLoop::PollTimeoutMs() const {
  if (timers_.empty()) return -1;
  const absl::Duration wait = timers_.begin()->first.first - Now();
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1))));
}

void EventLoop::RunDueTimers() {
  // A timer a callback adds runs in this round only if it is due before `now`.
  const absl::Time now = Now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_due_.erase(node.key().second);
    std::move(node.mapped())();
  }
}

void EventLoop::RunPostedTasks() {
  std::vector<absl::AnyInvocable<void() &&>> tasks;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(posted_);
  }
  for (auto& task : tasks) std::move(task)();
}

void EventLoop::Run() {
  thread_id_.store(std::this_thread::get_id());
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
  // A write to a socket whose peer is gone raises SIGPIPE in the writing thread, and its default
  // action ends the process; hiredis 0.14 writes with write(), not send(MSG_NOSIGNAL). Blocked
  // here, the write fails with EPIPE and the connection is dropped like any other failure.
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, nullptr);
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, PollTimeoutMs());
    if (n < 0 && errno != EINTR) {
      spdlog::critical("fleet event loop: epoll_wait failed: {}", std::strerror(errno));
      std::abort();
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeData) {
        uint64_t count = 0;
        [[maybe_unused]] const ssize_t r = read(wake_fd_, &count, sizeof(count));
        continue;
      }
      // Looked up per event: an earlier handler of this round may have unwatched this one.
      const auto it = watchers_.find(events[i].data.u64);
      if (it != watchers_.end()) it->second->handler(events[i].events);
    }
    unwatched_.clear();
    RunDueTimers();
    RunPostedTasks();
  }
  // Destroyed on the loop thread, like everything they capture was used.
  timers_.clear();
  timer_due_.clear();
  watchers_.clear();
  std::vector<absl::AnyInvocable<void() &&>> dropped;
  absl::MutexLock lock(&mu_);
  dropped.swap(posted_);
}

}  // namespace flightcache
