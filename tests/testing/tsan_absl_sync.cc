// Makes Debian's Abseil synchronization visible to ThreadSanitizer (TSan builds only).
//
// libabsl_synchronization.so is not compiled with -fsanitize=thread, so TSan cannot see that
// absl::Mutex, CondVar, Notification, BlockingCounter and Barrier order memory: every access
// those primitives protect would be reported as a race. The tsan preset links each binary with
// `-Wl,--wrap=<symbol>` for their out-of-line entry points (cmake/FlightcacheHelpers.cmake), and
// the wrappers below tell TSan what each call does, through its public annotation interface
// (sanitizer/tsan_interface.h), before calling the real function.
//
// absl::Mutex may evaluate a waiter's Condition on the thread that unlocks; the pre/post
// annotations make TSan ignore accesses inside the real call, where that happens, exactly as
// Abseil's own TSan build does.
#include <sanitizer/tsan_interface.h>

// Exported by libtsan; not declared in GCC 12's sanitizer/tsan_interface.h.
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

void PreUnlock(void* mu) { __tsan_mutex_pre_unlock(mu, 0); }
void PostUnlock(void* mu) { __tsan_mutex_post_unlock(mu, 0); }
void PreLock(void* mu) { __tsan_mutex_pre_lock(mu, 0); }
void PostLock(void* mu) { __tsan_mutex_post_lock(mu, 0, 0); }
// A wait that releases a held mutex and holds it again on return.
void BeforeWait(void* mu) { PreUnlock(mu); }
void AfterWait(void* mu) {
  PostUnlock(mu);
  PreLock(mu);
  PostLock(mu);
}

// The real destructor removes the mutex from Abseil's deadlock-detection graph, a global
// structure guarded by an Abseil SpinLock that TSan cannot see (the graph's other updates happen
// inside Lock/Unlock, between the pre/post annotations above, where TSan already ignores them).
void IgnoreBegin() { __tsan_ignore_thread_begin(); }
void IgnoreEnd() { __tsan_ignore_thread_end(); }

}  // namespace

#define REAL(sym) __real_##sym
#define WRAP(sym) __wrap_##sym

using absl::BlockingCounter;
using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

extern "C" {

// absl::Mutex
void REAL(_ZN4absl7debian35Mutex4LockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex4LockEv)(Mutex* m) {
  PreLock(m);
  REAL(_ZN4absl7debian35Mutex4LockEv)(m);
  PostLock(m);
}
void REAL(_ZN4absl7debian35Mutex6UnlockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex6UnlockEv)(Mutex* m) {
  PreUnlock(m);
  REAL(_ZN4absl7debian35Mutex6UnlockEv)(m);
  PostUnlock(m);
}
bool REAL(_ZN4absl7debian35Mutex7TryLockEv)(Mutex*);
bool WRAP(_ZN4absl7debian35Mutex7TryLockEv)(Mutex* m) {
  __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
  const bool ok = REAL(_ZN4absl7debian35Mutex7TryLockEv)(m);
  __tsan_mutex_post_lock(m, __tsan_mutex_try_lock | (ok ? 0 : __tsan_mutex_try_lock_failed), 0);
  return ok;
}
void REAL(_ZN4absl7debian35Mutex10ReaderLockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex10ReaderLockEv)(Mutex* m) {
  __tsan_mutex_pre_lock(m, __tsan_mutex_read_lock);
  REAL(_ZN4absl7debian35Mutex10ReaderLockEv)(m);
  __tsan_mutex_post_lock(m, __tsan_mutex_read_lock, 0);
}
void REAL(_ZN4absl7debian35Mutex12ReaderUnlockEv)(Mutex*);
void WRAP(_ZN4absl7debian35Mutex12ReaderUnlockEv)(Mutex* m) {
  __tsan_mutex_pre_unlock(m, __tsan_mutex_read_lock);
  REAL(_ZN4absl7debian35Mutex12ReaderUnlockEv)(m);
  __tsan_mutex_post_unlock(m, __tsan_mutex_read_lock);
}
bool REAL(_ZN4absl7debian35Mutex13ReaderTryLockEv)(Mutex*);
bool WRAP(_ZN4absl7debian35Mutex13ReaderTryLockEv)(Mutex* m) {
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(m, flags);
  const bool ok = REAL(_ZN4absl7debian35Mutex13ReaderTryLockEv)(m);
  __tsan_mutex_post_lock(m, flags | (ok ? 0 : __tsan_mutex_try_lock_failed), 0);
  return ok;
}
void REAL(_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE)(Mutex*, const Condition&);
void WRAP(_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE)(Mutex* m, const Condition& c) {
  BeforeWait(m);
  REAL(_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE)(m, c);
  AfterWait(m);
}
bool REAL(_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex*, const Condition&, Duration);
bool WRAP(_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex* m, const Condition& c, Duration d) {
  BeforeWait(m);
  const bool r =
      REAL(_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE)(m, c, d);
  AfterWait(m);
  return r;
}
bool REAL(_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE)(Mutex*,
                                                                                 const Condition&,
                                                                                 Time);
bool WRAP(_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE)(Mutex* m,
                                                                                 const Condition& c,
                                                                                 Time t) {
  BeforeWait(m);
  const bool r =
      REAL(_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE)(m, c, t);
  AfterWait(m);
  return r;
}
void REAL(_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE)(Mutex*, const Condition&);
void WRAP(_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE)(Mutex* m, const Condition& c) {
  PreLock(m);
  REAL(_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE)(m, c);
  PostLock(m);
}
bool REAL(_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex*, const Condition&, Duration);
bool WRAP(_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE)(
    Mutex* m, const Condition& c, Duration d) {
  PreLock(m);
  const bool r =
      REAL(_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE)(m, c, d);
  PostLock(m);
  return r;
}
bool REAL(_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE)(
    Mutex*, const Condition&, Time);
bool WRAP(_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE)(
    Mutex* m, const Condition& c, Time t) {
  PreLock(m);
  const bool r =
      REAL(_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE)(m, c, t);
  PostLock(m);
  return r;
}
void REAL(_ZN4absl7debian35MutexD1Ev)(Mutex*);
void WRAP(_ZN4absl7debian35MutexD1Ev)(Mutex* m) {
  __tsan_mutex_destroy(m, 0);
  IgnoreBegin();
  REAL(_ZN4absl7debian35MutexD1Ev)(m);
  IgnoreEnd();
}
void REAL(_ZN4absl7debian35MutexD2Ev)(Mutex*);
void WRAP(_ZN4absl7debian35MutexD2Ev)(Mutex* m) {
  __tsan_mutex_destroy(m, 0);
  IgnoreBegin();
  REAL(_ZN4absl7debian35MutexD2Ev)(m);
  IgnoreEnd();
}

// absl::CondVar: waiting releases the mutex and holds it again on return.
void REAL(_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE)(CondVar*, Mutex*);
void WRAP(_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE)(CondVar* cv, Mutex* m) {
  BeforeWait(m);
  REAL(_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE)(cv, m);
  AfterWait(m);
}
bool REAL(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)(CondVar*, Mutex*,
                                                                                Duration);
bool WRAP(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)(CondVar* cv,
                                                                                Mutex* m,
                                                                                Duration d) {
  BeforeWait(m);
  const bool r =
      REAL(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)(cv, m, d);
  AfterWait(m);
  return r;
}
bool REAL(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)(CondVar*, Mutex*,
                                                                             Time);
bool WRAP(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)(CondVar* cv, Mutex* m,
                                                                             Time t) {
  BeforeWait(m);
  const bool r = REAL(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)(cv, m, t);
  AfterWait(m);
  return r;
}

// absl::Notification: Notify() happens before every wait that returns notified.
void REAL(_ZN4absl7debian312Notification6NotifyEv)(Notification*);
void WRAP(_ZN4absl7debian312Notification6NotifyEv)(Notification* n) {
  __tsan_release(n);
  REAL(_ZN4absl7debian312Notification6NotifyEv)(n);
}
void REAL(_ZNK4absl7debian312Notification19WaitForNotificationEv)(const Notification*);
void WRAP(_ZNK4absl7debian312Notification19WaitForNotificationEv)(const Notification* n) {
  REAL(_ZNK4absl7debian312Notification19WaitForNotificationEv)(n);
  __tsan_acquire(const_cast<Notification*>(n));
}
bool REAL(_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE)(
    const Notification*, Duration);
bool WRAP(_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE)(
    const Notification* n, Duration d) {
  const bool r =
      REAL(_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE)(n, d);
  if (r) __tsan_acquire(const_cast<Notification*>(n));
  return r;
}
bool REAL(_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE)(
    const Notification*, Time);
bool WRAP(_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE)(
    const Notification* n, Time t) {
  const bool r =
      REAL(_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE)(n, t);
  if (r) __tsan_acquire(const_cast<Notification*>(n));
  return r;
}

// absl::BlockingCounter: every DecrementCount() happens before Wait() returns.
bool REAL(_ZN4absl7debian315BlockingCounter14DecrementCountEv)(BlockingCounter*);
bool WRAP(_ZN4absl7debian315BlockingCounter14DecrementCountEv)(BlockingCounter* b) {
  __tsan_release(b);
  return REAL(_ZN4absl7debian315BlockingCounter14DecrementCountEv)(b);
}
void REAL(_ZN4absl7debian315BlockingCounter4WaitEv)(BlockingCounter*);
void WRAP(_ZN4absl7debian315BlockingCounter4WaitEv)(BlockingCounter* b) {
  REAL(_ZN4absl7debian315BlockingCounter4WaitEv)(b);
  __tsan_acquire(b);
}

// absl::Barrier: every arrival happens before every return.
bool REAL(_ZN4absl7debian37Barrier5BlockEv)(absl::Barrier*);
bool WRAP(_ZN4absl7debian37Barrier5BlockEv)(absl::Barrier* b) {
  __tsan_release(b);
  const bool last = REAL(_ZN4absl7debian37Barrier5BlockEv)(b);
  __tsan_acquire(b);
  return last;
}

}  // extern "C"
