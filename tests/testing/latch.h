// Latch: a countdown that tests wait on with a bound.
//
// absl::BlockingCounter and a bare Notification wait forever: on a broken build a test then hangs
// until ctest kills it, and the failure names nothing. Latch::WaitFor returns false after the
// timeout so the test fails with its own message.
//
// Thread-safety: thread-safe.
//
// Usage:
//   Latch answered(3);
//   ... answered.CountDown();  // from each callback
//   ASSERT_TRUE(answered.WaitFor()) << "a waiter was never answered";
#ifndef FLIGHTCACHE_TESTS_TESTING_LATCH_H_
#define FLIGHTCACHE_TESTS_TESTING_LATCH_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace flightcache::testing {

// Long enough for a busy 2-core CI machine, short enough that a hang fails well inside ctest's
// own timeout.
inline constexpr absl::Duration kTestWait = absl::Seconds(30);

class Latch final {
 public:
  explicit Latch(int count) : count_(count) {}

  void CountDown() {
    absl::MutexLock lock(&mu_);
    --count_;
  }

  // True once the count reached zero; false if `timeout` passed first.
  [[nodiscard]] bool WaitFor(absl::Duration timeout = kTestWait) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return count_ <= 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

 private:
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_LATCH_H_
