#include "flightcache/concurrency_limiter.h"

#include <algorithm>
#include <cassert>
#include <iterator>
#include <list>
#include <memory>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace flightcache {
namespace {

absl::Status QueueFullError(size_t queued) {
  return absl::ResourceExhaustedError(absl::StrCat("load queue full (", queued, " queued)"));
}

absl::Status CancelledInQueueError() {
  return absl::CancelledError("cancelled while queued for a load permit");
}

}  // namespace

// Ownership and the two races that matter:
//
// A queued acquirer is a `Waiter`, owned by a shared_ptr. The queue holds one reference while the
// waiter is queued; whoever unlinks it under `mu` (a releasing Permit handing itself over, or the
// waiter's stop callback) owns the outcome, so a permit handed over is never also cancelled and a
// cancelled waiter is never also handed a permit. The loser finds `queued == false` and does
// nothing.
//
// Each waiter owns a std::stop_callback. Its destructor blocks while the callback runs on another
// thread, and the callback takes `mu`, so a waiter reference is never dropped with `mu` held. The
// stop callback itself holds a reference while it delivers CANCELLED and drops it last, which may
// destroy the stop_callback from inside its own invocation on the same thread (allowed by
// [stopcallback.cons]: the destructor then does not wait).
struct ConcurrencyLimiter::State {
  struct Waiter;
  using WaiterList = std::list<std::shared_ptr<Waiter>>;

  struct OnCancel {
    State* state;
    Waiter* waiter;  // alive: the stop_callback holding this functor is a member of *waiter
    void operator()() const noexcept { state->Cancel(waiter); }
  };

  struct Waiter {
    GrantCallback granted;     // guarded by State::mu until moved out by the winner
    WaiterList::iterator pos;  // guarded by State::mu; valid while `queued`
    absl::Time queued_at;      // set before it is queued; read under State::mu
    bool queued = false;       // guarded by State::mu
    // Last member, so it is destroyed first: its destructor waits for a callback running on
    // another thread, which reads the fields above.
    std::optional<std::stop_callback<OnCancel>> on_cancel;
  };

  State(ConcurrencyLimiter* owner, int64_t permits, int64_t max_queued,
        ConcurrencyLimiterOptions options)
      : owner(owner), max_queued(max_queued), options(options), permits(permits) {}

  absl::Time Now() const {
    return options.clock != nullptr ? options.clock->Now() : absl::InfinitePast();
  }

  // Which waiter a permit goes to: the oldest, or with adaptive LIFO and a backlog the newest.
  // REQUIRES: !queue.empty().
  WaiterList::iterator NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (options.lifo_after != absl::InfiniteDuration() &&
        Now() - queue.front()->queued_at > options.lifo_after) {
      ++lifo_handoffs;
      return std::prev(queue.end());
    }
    return queue.begin();
  }

  // Called by a waiter's stop callback, on the thread that requested stop.
  void Cancel(Waiter* waiter);

  // Returns one permit: hands it to the next waiter (NextLocked), or frees it.
  void Release() { HandOver(1); }

  // Gives `count` permits, already counted in `in_use`, to the next waiters; frees those that no
  // waiter takes or that are above the limit.
  void HandOver(int64_t count);

  // Returns true and takes a permit if one is free and nobody waits (FIFO: a newcomer must not
  // overtake the queue).
  bool TakeFreePermitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (in_use >= permits || !queue.empty()) return false;
    ++in_use;
    return true;
  }

  ConcurrencyLimiter* const owner;
  const int64_t max_queued;
  const ConcurrencyLimiterOptions options;

  mutable absl::Mutex mu;
  int64_t permits ABSL_GUARDED_BY(mu);  // K; SetPermits changes it
  // Permits held by Permit objects, including one being handed over (the count does not drop
  // during a hand-off). Above `permits` for a while after SetPermits lowered it. Invariant:
  // !queue.empty() implies in_use >= permits.
  int64_t in_use ABSL_GUARDED_BY(mu) = 0;
  WaiterList queue ABSL_GUARDED_BY(mu);  // oldest first
  int64_t lifo_handoffs ABSL_GUARDED_BY(mu) = 0;
};

namespace {

// Hand-offs run as a loop, not as recursion: when a granted callback releases its permit inline,
// the release is counted here and the outer loop hands the permit on. Without this, a queue of N
// acquirers that each release at once would nest N frames deep.
struct HandoffLoop {
  const void* state;
  int64_t pending_releases;
};
thread_local HandoffLoop* current_handoff_loop = nullptr;

}  // namespace

void ConcurrencyLimiter::State::Cancel(Waiter* waiter) {
  std::shared_ptr<Waiter> keep;  // declared first so it is destroyed last
  GrantCallback granted;
  {
    absl::MutexLock lock(&mu);
    if (!waiter->queued) return;  // not queued yet (Acquire re-checks the token) or handed a permit
    keep = std::move(*waiter->pos);
    queue.erase(waiter->pos);
    waiter->queued = false;
    granted = std::move(waiter->granted);
  }
  granted(CancelledInQueueError());
  granted = nullptr;
  // `keep` may be the last reference: dropping it destroys the stop_callback we run in, which is
  // allowed on this thread. Nothing may touch `waiter` or this functor after this line.
}

void ConcurrencyLimiter::State::HandOver(int64_t count) {
  if (current_handoff_loop != nullptr && current_handoff_loop->state == this) {
    current_handoff_loop->pending_releases += count;  // the enclosing loop hands these on
    return;
  }
  HandoffLoop loop{this, count};
  HandoffLoop* const outer = current_handoff_loop;
  current_handoff_loop = &loop;
  while (loop.pending_releases > 0) {
    --loop.pending_releases;
    std::shared_ptr<Waiter> next;
    GrantCallback granted;
    {
      absl::MutexLock lock(&mu);
      if (queue.empty() || in_use > permits) {
        --in_use;
        continue;
      }
      const WaiterList::iterator pick = NextLocked();
      next = std::move(*pick);
      queue.erase(pick);
      next->queued = false;
      granted = std::move(next->granted);
    }
    // Outside the lock: dropping `next` may destroy its stop_callback, which may wait for that
    // callback running on another thread (it will find `queued == false` and return).
    next.reset();
    granted(Permit(owner));
  }
  current_handoff_loop = outer;
}

ConcurrencyLimiter::ConcurrencyLimiter(int64_t permits, int64_t max_queued,
                                       ConcurrencyLimiterOptions options)
    : state_(new State(this, permits, max_queued, options)) {
  assert(permits >= 1);
  assert(max_queued >= 0);
  assert(options.lifo_after == absl::InfiniteDuration() || options.clock != nullptr);
}

ConcurrencyLimiter::~ConcurrencyLimiter() {
  // An acquirer can be pending only while some Permit is alive, which already breaks the
  // lifetime contract. Still, unregister the waiters' stop callbacks (outside the lock) so a later
  // stop request cannot reach freed state, and fail them so that no callback is left uncalled.
  std::vector<GrantCallback> orphans;
  State::WaiterList waiters;
  {
    absl::MutexLock lock(&state_->mu);
    for (auto& w : state_->queue) {
      w->queued = false;
      orphans.push_back(std::move(w->granted));
    }
    waiters.swap(state_->queue);
  }
  waiters.clear();
  for (auto& granted : orphans) {
    granted(absl::CancelledError("concurrency limiter destroyed while queued"));
  }
  delete state_;
}

void ConcurrencyLimiter::Acquire(const std::stop_token& cancel, GrantCallback granted) {
  if (cancel.stop_requested()) {
    granted(CancelledInQueueError());
    return;
  }
  State& s = *state_;
  enum class Outcome { kGranted, kFull, kCancelled, kQueued };
  Outcome outcome;
  size_t queued_now = 0;
  {
    absl::MutexLock lock(&s.mu);
    if (s.TakeFreePermitLocked()) {
      outcome = Outcome::kGranted;
    } else if (static_cast<int64_t>(s.queue.size()) >= s.max_queued) {
      outcome = Outcome::kFull;
      queued_now = s.queue.size();
    } else {
      outcome = Outcome::kQueued;
    }
  }
  if (outcome == Outcome::kGranted) return granted(Permit(this));
  if (outcome == Outcome::kFull) return granted(QueueFullError(queued_now));

  // Slow path. The stop callback is registered before the waiter is linked, so a stop requested
  // at any moment is seen: either by the callback (waiter queued) or by the re-check below.
  auto waiter = std::make_shared<State::Waiter>();
  waiter->granted = std::move(granted);
  waiter->queued_at = s.Now();
  waiter->on_cancel.emplace(cancel, State::OnCancel{&s, waiter.get()});
  GrantCallback deliver;
  {
    absl::MutexLock lock(&s.mu);
    if (cancel.stop_requested()) {
      outcome = Outcome::kCancelled;
    } else if (s.TakeFreePermitLocked()) {
      outcome = Outcome::kGranted;  // a permit came free meanwhile
    } else if (static_cast<int64_t>(s.queue.size()) >= s.max_queued) {
      outcome = Outcome::kFull;
      queued_now = s.queue.size();
    } else {
      waiter->pos = s.queue.insert(s.queue.end(), waiter);
      waiter->queued = true;
      return;  // `waiter` is dropped after the lock: MutexLock was declared later
    }
    deliver = std::move(waiter->granted);
  }
  waiter.reset();  // outside the lock: may wait for a stop callback that found it unqueued
  switch (outcome) {
    case Outcome::kGranted:
      return deliver(Permit(this));
    case Outcome::kFull:
      return deliver(QueueFullError(queued_now));
    case Outcome::kCancelled:
    case Outcome::kQueued:
      return deliver(CancelledInQueueError());
  }
}

std::optional<ConcurrencyLimiter::Permit> ConcurrencyLimiter::TryAcquire() {
  absl::MutexLock lock(&state_->mu);
  if (!state_->TakeFreePermitLocked()) return std::nullopt;
  return Permit(this);
}

int64_t ConcurrencyLimiter::in_use() const {
  absl::MutexLock lock(&state_->mu);
  return state_->in_use;
}

int64_t ConcurrencyLimiter::queued() const {
  absl::MutexLock lock(&state_->mu);
  return static_cast<int64_t>(state_->queue.size());
}

int64_t ConcurrencyLimiter::lifo_handoffs() const {
  absl::MutexLock lock(&state_->mu);
  return state_->lifo_handoffs;
}

int64_t ConcurrencyLimiter::permits() const {
  absl::MutexLock lock(&state_->mu);
  return state_->permits;
}

void ConcurrencyLimiter::SetPermits(int64_t permits) {
  assert(permits >= 1);
  int64_t granted = 0;
  {
    absl::MutexLock lock(&state_->mu);
    state_->permits = permits;
    granted = std::min(permits - state_->in_use, static_cast<int64_t>(state_->queue.size()));
    if (granted <= 0) return;
    state_->in_use += granted;  // counted as held until handed over, as a released permit is
  }
  state_->HandOver(granted);
}

ConcurrencyLimiter::Permit::Permit(Permit&& other) noexcept
    : limiter_(std::exchange(other.limiter_, nullptr)) {}

ConcurrencyLimiter::Permit& ConcurrencyLimiter::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
  }
  return *this;
}

ConcurrencyLimiter::Permit::~Permit() { Release(); }

void ConcurrencyLimiter::Permit::Release() {
  ConcurrencyLimiter* const limiter = std::exchange(limiter_, nullptr);
  if (limiter != nullptr) limiter->state_->Release();
}

}  // namespace flightcache
