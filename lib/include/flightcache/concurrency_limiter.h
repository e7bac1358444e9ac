// ConcurrencyLimiter: an asynchronous FIFO semaphore with K permits and a bounded wait queue.
//
// Acquire() never blocks: it calls `granted` exactly once — inline with a permit when one is free
// and nobody is queued; inline with RESOURCE_EXHAUSTED when the queue is full; later with a permit
// when one is handed over in FIFO order (or LIFO under a backlog: see below); or with CANCELLED
// when `cancel` fires while queued (the acquirer then leaves the queue). A Permit releases itself
// when destroyed and hands itself to the next queued acquirer. No permit is ever lost, also when
// cancellation races with a hand-off: an acquirer cancelled after it was handed a permit still
// receives it (and normally drops it).
//
// Adaptive LIFO (optional, ConcurrencyLimiterOptions::lifo_after): while the oldest queued
// acquirer has waited longer than `lifo_after`, a released permit goes to the newest one instead.
// Past that point the queue is a backlog: its oldest callers are about to give up, and a permit
// spent on them is spent on an answer nobody waits for, while the newest still have their whole
// deadline (Facebook's adaptive LIFO; the old ones leave when their callers cancel). Off, or while
// the queue keeps up, the order is FIFO.
//
// Thread-safety: thread-safe. `granted` runs without the limiter's lock held, on the thread that
// called Acquire() or that released the permit handed over.
//
// Lifetime: the limiter must outlive every Permit and every pending acquirer.
//
// Usage:
//   limiter.Acquire(load_stop_token, [](absl::StatusOr<ConcurrencyLimiter::Permit> p) {
//     if (!p.ok()) return Fail(p.status());
//     StartFetch(*std::move(p));  // the permit is released when the fetch's owner drops it
//   });
#ifndef FLIGHTCACHE_CONCURRENCY_LIMITER_H_
#define FLIGHTCACHE_CONCURRENCY_LIMITER_H_

#include <cstdint>
#include <optional>
#include <stop_token>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flightcache/clock.h"

namespace flightcache {

struct ConcurrencyLimiterOptions {
  // Adaptive LIFO after the oldest acquirer has queued this long (see above); infinite: FIFO
  // always. Needs `clock`.
  absl::Duration lifo_after = absl::InfiniteDuration();
  const Clock* clock = nullptr;  // must outlive the limiter
};

class ConcurrencyLimiter final {
 public:
  class Permit;
  using GrantCallback = absl::AnyInvocable<void(absl::StatusOr<Permit>)>;

  // REQUIRES: permits >= 1, max_queued >= 0; a finite options.lifo_after has a clock.
  ConcurrencyLimiter(int64_t permits, int64_t max_queued, ConcurrencyLimiterOptions options = {});
  ~ConcurrencyLimiter();
  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;

  void Acquire(const std::stop_token& cancel, GrantCallback granted);

  // A permit now, or nothing — never queues (hedges use this).
  std::optional<Permit> TryAcquire();

  // Changes K (an adaptive limit does). Raising it hands the new permits to queued acquirers at
  // once, on this thread; lowering it takes effect as held permits are released (none is revoked).
  // REQUIRES: permits >= 1.
  void SetPermits(int64_t permits);

  int64_t in_use() const;         // permits held now (above K for a while after K was lowered)
  int64_t queued() const;         // acquirers waiting now
  int64_t permits() const;        // K
  int64_t lifo_handoffs() const;  // permits handed to the newest acquirer (adaptive LIFO)

 private:
  struct State;
  State* state_;  // owned; see concurrency_limiter.cc
};

// Move-only ownership of one permit; released on destruction or Release().
class ConcurrencyLimiter::Permit final {
 public:
  Permit() = default;
  Permit(Permit&& other) noexcept;
  Permit& operator=(Permit&& other) noexcept;
  ~Permit();

  void Release();
  bool valid() const { return limiter_ != nullptr; }

 private:
  friend class ConcurrencyLimiter;
  explicit Permit(ConcurrencyLimiter* limiter) : limiter_(limiter) {}
  ConcurrencyLimiter* limiter_ = nullptr;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_CONCURRENCY_LIMITER_H_
