// WorkerPool: a few threads that run posted tasks, for work that may block and must not hold up
// the thread that found it due.
//
// The sidecar's one timer thread finds callers' deadlines due; what a deadline triggers (the
// flight's last waiter leaving, the origin call's cancellation, the reactor's Finish) goes through
// gRPC and can wait there for milliseconds under load. Run on the timer thread, one such wait
// would hold back every timer due behind it; posted here, it holds back only itself (unless every
// worker is waiting at once).
//
// Tasks run in the order posted, each on whichever worker is free: two tasks may run at once.
// An exception thrown by a task is caught and dropped (tasks report their own errors).
//
// Thread-safety: thread-safe. Lifetime: the destructor runs the tasks already posted, then joins
// the workers; Post() after destruction began is a bug.
//
// Usage:
//   WorkerPool pool(4);
//   pool.Post([wait] { wait->Leave(); });
#ifndef FLIGHTCACHE_WORKER_POOL_H_
#define FLIGHTCACHE_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace flightcache {

class WorkerPool {
 public:
  // REQUIRES: threads >= 1.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task` to run on a worker; never runs it inline.
  void Post(absl::AnyInvocable<void()> task);

  // Tasks posted and not yet started.
  size_t queued() const;

  // Worker threads.
  size_t size() const { return workers_.size(); }

 private:
  void Work();

  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_WORKER_POOL_H_
