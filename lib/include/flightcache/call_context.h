// CallContext: what bounds one caller's wait — a cancellation token and a deadline.
//
// Every blocking wait in the core takes a CallContext and returns when the result is ready, the
// token is cancelled (CANCELLED) or the deadline passes (DEADLINE_EXCEEDED), whichever is first.
// The deadline is in MonotonicClock time. A CallContext is a small value: copy it freely.
//
// Usage:
//   std::stop_source cancel;
//   CallContext ctx = CallContext::WithTimeout(absl::Milliseconds(50), cancel.get_token());
//   absl::StatusOr<...> r = future.Await(ctx);
#ifndef FLIGHTCACHE_CALL_CONTEXT_H_
#define FLIGHTCACHE_CALL_CONTEXT_H_

#include <stop_token>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"

namespace flightcache {

class CallContext {
 public:
  // No deadline, never cancelled.
  CallContext() = default;
  CallContext(absl::Time deadline, std::stop_token token)
      : deadline_(deadline), token_(std::move(token)) {}

  static CallContext WithTimeout(absl::Duration timeout, std::stop_token token = {}) {
    return CallContext(MonotonicClock::Get().Now() + timeout, std::move(token));
  }

  absl::Time deadline() const { return deadline_; }
  const std::stop_token& stop_token() const { return token_; }

  // OK while the call may go on; otherwise the status that ends it (CANCELLED first).
  absl::Status Check() const {
    if (token_.stop_requested()) return absl::CancelledError("call cancelled");
    if (MonotonicClock::Get().Now() >= deadline_) {
      return absl::DeadlineExceededError("call deadline exceeded");
    }
    return absl::OkStatus();
  }

 private:
  absl::Time deadline_ = absl::InfiniteFuture();
  std::stop_token token_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_CALL_CONTEXT_H_
