// SingleFlightGroup: at most one load in flight per key, shared by every caller that asks.
//
// Join(key) joins the key's flight or starts one. Each joined caller is a *waiter* and holds a
// reference; FlightWaiter::Cancel() drops it. When the last waiter leaves before the load is done,
// AbandonPolicy decides: kCancel removes the flight from the table (atomically with the count
// reaching zero, so no new caller can join a doomed flight), fires its stop token and completes it
// with CANCELLED; kFinish lets it run on and store its result.
//
// A load runs detached from every caller: under the group's own `load_timeout` (after which it
// completes with UNAVAILABLE and its stop token fires), never under a caller's deadline.
//
// Hooks connect the group to a cache without the group knowing about it:
// - `recheck(key)` runs under the key's shard lock just before a new flight would start. If it
//   returns a result (the value arrived in the cache since the caller missed it), no flight starts
//   and Join() reports kAnsweredByRecheck with that result. Together with `store` below this closes
//   the race where a caller misses the cache just as a load completes and would start a second
//   load.
// - `store(key, result)` runs under the key's shard lock when a flight that is still attached
//   completes, before its waiters wake and before it leaves the table.
// StartBackground(key) starts a flight that no caller waits for (a background refresh): callers
// who ask for the key meanwhile join it, and it is never cancelled for lack of waiters.
// Detach(key) (the server's Invalidate) removes the key's flight from the table under the same
// lock: its waiters still get its result, but `store` is never called for it, and later callers
// start a new flight — so a slow old load can never overwrite a newer value. The group still
// tracks a detached flight until it completes, so CancelAll() (and the destructor) cancels it too.
//
// The loader is called once per flight, on the joining thread, with a LoadHandle it must complete
// exactly once (now or later, from any thread). A loader that throws, or drops its handle without
// completing it, completes the flight with INTERNAL: no waiter hangs.
//
// A waiter costs the group no allocation of its own: its callback is kept by value in the
// flight's subscriber table, and a callback that takes the key gets the flight's (held once).
// With Options::wake_workers, a completed flight of many waiters is answered by its completing
// thread and the workers together (see GroupCore::Wake); otherwise by the completing thread.
//
// Thread-safety: thread-safe. Hooks run under a shard lock: they must be short and must not call
// back into the group. Waiter callbacks and the loader run with no group lock held.
// Lifetime: the group must outlive its FlightWaiters; LoadHandles may outlive the group (then
// completing them is a no-op). The TimerQueue must outlive the group and every LoadHandle.
//
// Usage:
//   SingleFlightGroup<std::string> group(options, timers);
//   auto joined = group.Join("k", [](LoadHandle<std::string>&& load) {
//     origin.Fetch(load.key(), load.stop_token(), [h = std::move(load)](auto r) mutable {
//       h.Complete(std::move(r));
//     });
//   }, [](const SharedResult<std::string>& r) { Reply(r); });
//   ... joined.waiter.Cancel();  // this caller gave up; the load goes on for the others
#ifndef FLIGHTCACHE_INTERNAL_SINGLE_FLIGHT_H_
#define FLIGHTCACHE_INTERNAL_SINGLE_FLIGHT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/flight.h"
#include "flightcache/timer_queue.h"
#include "flightcache/worker_pool.h"

namespace flightcache {

struct SingleFlightStats {
  int64_t started = 0;    // flights started
  int64_t inflight = 0;   // flights started and not yet complete
  int64_t abandoned = 0;  // cancelled because their last waiter left
  int64_t timed_out = 0;  // completed by the load timeout
};

namespace internal {

// Debian's Abseil has its own string_view type: heterogeneous lookups need it.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace internal

// How a caller came to its result: see SingleFlightGroup::Outcome.
enum class JoinOutcome {
  kStarted,            // this caller started the flight (the loader ran)
  kJoined,             // this caller joined a flight already in flight
  kAnsweredByRecheck,  // recheck() found the value (Joined::answer): no flight, no `done`
};

// A waiter's callback: (result, outcome), or (result, outcome, key) — the flight's key, which the
// flight holds once for all its waiters — for a callback that takes it.
template <typename T, typename Done = absl::AnyInvocable<void(const SharedResult<T>&, JoinOutcome)>>
class SingleFlightGroup;
template <typename T>
class LoadHandle;

namespace internal {

template <typename T, typename Done>
class GroupCore;

// What a flight keeps of one waiter, by value in its subscriber table (no allocation of its own):
// the caller's callback and how it joined. Called with the result and the flight's key.
template <typename T, typename Done>
struct GroupWaiter {
  void operator()(const SharedResult<T>& result, const std::string& key) {
    if constexpr (std::is_invocable_v<Done&, const SharedResult<T>&, JoinOutcome,
                                      const std::string&>) {
      done(result, outcome, key);
    } else {
      done(result, outcome);
    }
  }

  Done done;
  JoinOutcome outcome;
};

// What a LoadHandle needs of its flight, without the group's callback type.
template <typename T>
struct LoadTarget : WaiterTarget {
  explicit LoadTarget(std::string k) : key(std::move(k)) {}
  // Completes the flight once (see GroupCore::Finish); false if it was already complete.
  virtual bool Complete(SharedResult<T> result) = 0;

  const std::string key;
  std::stop_source stop;
};

// One flight in the group: its future, its waiter count and its place in the table.
template <typename T, typename Done>
struct FlightEntry final : LoadTarget<T>, std::enable_shared_from_this<FlightEntry<T, Done>> {
  FlightEntry(std::string k, std::shared_ptr<GroupCore<T, Done>> c)
      : LoadTarget<T>(std::move(k)), core(std::move(c)) {}
  void Leave(uint64_t subscription) override {
    core->Leave(this->shared_from_this(), subscription);
  }
  bool Complete(SharedResult<T> result) override {
    return core->Finish(this->shared_from_this(), std::move(result));
  }

  const std::shared_ptr<GroupCore<T, Done>> core;
  FlightState<T, GroupWaiter<T, Done>> state;
  std::atomic<bool> completed{false};  // set once, by the first Finish()
  std::atomic<TimerId> timeout_timer{kNoTimer};
  // Guarded by the key's shard mutex:
  int64_t waiters = 0;
  bool attached = false;  // still in the table: its result may be stored
};

template <typename T, typename Done>
class GroupCore final : public std::enable_shared_from_this<GroupCore<T, Done>> {
 public:
  using Entry = FlightEntry<T, Done>;
  using EntryPtr = std::shared_ptr<Entry>;
  using Waiter = GroupWaiter<T, Done>;

  // One flight's waiters being answered by several threads: each Run() takes the next batch of
  // `batch` waiters until none is left, so every waiter is called exactly once. A waiter that
  // throws does not cost the others their answer: Run() goes on and rethrows the first exception
  // at the end (a wake worker's pool then drops it; the completing thread passes it on).
  struct SpreadWake {
    SpreadWake(EntryPtr e, SharedResult<T> r, size_t b)
        : entry(std::move(e)), result(std::move(r)), batch(b) {}
    void Run() {
      std::exception_ptr first_error;
      for (;;) {
        const size_t begin = next.fetch_add(batch, std::memory_order_relaxed);
        if (begin >= waiters.size()) break;
        const size_t end = std::min(waiters.size(), begin + batch);
        for (size_t i = begin; i < end; ++i) {
          try {
            (*waiters[i])(result, entry->key);
          } catch (...) {
            if (!first_error) first_error = std::current_exception();
          }
          // Destroyed by the thread that called it, before that thread's EndWake(): nothing of
          // a waiter outlives a wake the group's destruction waited for.
          waiters[i].reset();
        }
      }
      if (first_error) std::rethrow_exception(first_error);
    }

    const EntryPtr entry;
    const SharedResult<T> result;
    const size_t batch;
    // Filled before any Run(); then each slot is called and emptied by the one Run() that took it.
    std::vector<std::optional<Waiter>> waiters;
    std::atomic<size_t> next{0};
  };
  using RecheckHook = absl::AnyInvocable<SharedResult<T>(std::string_view key)>;  // null: miss
  using StoreHook = absl::AnyInvocable<void(const std::string& key, const absl::StatusOr<T>&)>;
  using CompletedHook = absl::AnyInvocable<void(const std::string& key, const absl::StatusOr<T>&)>;

  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, EntryPtr> flights ABSL_GUARDED_BY(mu);
    // Flights taken out of `flights` by Detach() that have not completed yet: not joinable any
    // more, but CancelAll() must still reach them.
    absl::flat_hash_map<const Entry*, EntryPtr> detached ABSL_GUARDED_BY(mu);
  };

  GroupCore(AbandonPolicy policy, absl::Duration load_timeout, std::string timeout_text,
            int shard_count, WorkerPool* wake_workers, size_t wake_batch, TimerQueue& timers,
            RecheckHook recheck, StoreHook store, CompletedHook completed)
      : policy(policy),
        load_timeout(load_timeout),
        timeout_message(timeout_text.empty() ? absl::StrCat("load timed out after ",
                                                            absl::FormatDuration(load_timeout))
                                             : std::move(timeout_text)),
        timers(timers),
        recheck(std::move(recheck)),
        store(std::move(store)),
        completed(std::move(completed)),
        wake_workers(wake_workers),
        wake_batch(std::max<size_t>(wake_batch, 1)),
        shards(RoundUpToPowerOfTwo(shard_count)) {}

  static size_t RoundUpToPowerOfTwo(int n) {
    size_t p = 1;
    while (p < static_cast<size_t>(n)) p <<= 1;
    return p;
  }

  Shard& ShardFor(std::string_view key) {
    return shards[absl::Hash<std::string_view>()(key) & (shards.size() - 1)];
  }

  // Completes the flight once: stores the result if still attached, takes the flight out of the
  // table, then wakes the waiters. Later calls return false and do nothing.
  bool Finish(const EntryPtr& entry, SharedResult<T> result) {
    if (entry->completed.exchange(true)) return false;
    {
      Shard& shard = ShardFor(entry->key);
      absl::MutexLock lock(&shard.mu);
      if (entry->attached) {
        if (store) store(entry->key, *result);
        shard.flights.erase(entry->key);
        entry->attached = false;
      } else {
        shard.detached.erase(entry.get());
      }
    }
    const TimerId timer = entry->timeout_timer.exchange(kNoTimer);
    if (timer != kNoTimer) timers.Cancel(timer);
    inflight.fetch_sub(1, std::memory_order_relaxed);
    if (completed) completed(entry->key, *result);
    if (auto waiters = entry->state.Publish(result)) Wake(entry, std::move(*waiters), result);
    return true;
  }

  // Calls each of a completed flight's waiters once. With wake workers, a flight of more than
  // one batch of waiters is answered by this thread and up to every worker at once, each taking
  // the next batch until none is left: answering N waiters (each one a reactor's Finish, in the
  // server) scales with cores instead of taking this one thread N times as long.
  void Wake(const EntryPtr& entry, typename FlightState<T, Waiter>::Subscribers subscribers,
            const SharedResult<T>& result) {
    const size_t batches = (subscribers.size() + wake_batch - 1) / wake_batch;
    size_t helpers = 0;  // wake tasks to post: one per further batch, at most one per worker
    if (wake_workers != nullptr && batches > 1) {
      helpers = std::min(batches - 1, wake_workers->size());
    }
    std::shared_ptr<SpreadWake> wake;
    if (helpers > 0) {
      try {
        wake = std::make_shared<SpreadWake>(entry, result, wake_batch);
        wake->waiters.reserve(subscribers.size());
      } catch (const std::bad_alloc&) {
        wake = nullptr;  // no memory to spread the wake: this thread answers everyone
      }
    }
    if (wake == nullptr || !BeginWakes(helpers)) {
      for (auto& [id, waiter] : subscribers) waiter(result, entry->key);
      return;
    }
    for (auto& [id, waiter] : subscribers) wake->waiters.emplace_back(std::move(waiter));
    subscribers = {};
    size_t posted = 0;
    try {
      for (; posted < helpers; ++posted) {
        wake_workers->Post([core = this->shared_from_this(), wake] {
          // Even when a waiter threw: StopWakes() must not wait for this task forever.
          struct EndWakeOnExit {
            GroupCore& core;
            ~EndWakeOnExit() { core.EndWake(); }
          } end_wake{*core};
          wake->Run();
        });
      }
    } catch (...) {
      // A task that could not be posted: its share is this thread's (Run() takes what is left).
      for (size_t i = posted; i < helpers; ++i) EndWake();
    }
    wake->Run();
  }

  void Leave(const EntryPtr& entry, uint64_t subscription) {
    auto callback = entry->state.Unsubscribe(subscription);
    if (!callback.has_value()) return;  // already answered
    bool doomed = false;
    {
      Shard& shard = ShardFor(entry->key);
      absl::MutexLock lock(&shard.mu);
      if (--entry->waiters == 0 && policy == AbandonPolicy::kCancel && !entry->completed.load()) {
        doomed = true;
        if (entry->attached) {
          // Out of the table in the same critical section that saw the count reach zero: a
          // caller that arrives now starts a fresh flight instead of joining this one.
          shard.flights.erase(entry->key);
          entry->attached = false;
        }
      }
    }
    (*callback)(MakeSharedResult<T>(absl::CancelledError("the caller stopped waiting")),
                entry->key);
    if (doomed) {
      // Complete first, then stop: a loader that answers from inside its stop callback (the
      // limiter does, for a queued load) must not overtake the cancellation.
      if (Finish(entry,
                 MakeSharedResult<T>(absl::CancelledError("load cancelled: every waiter left")))) {
        abandoned.fetch_add(1, std::memory_order_relaxed);
      }
      entry->stop.request_stop();
    }
  }

  // Runs on the timer thread. Counted in `running_timeouts` so that CancelAll() can wait for it:
  // it runs the hooks, which may point into the group's owner.
  void OnTimeout(const EntryPtr& entry) {
    {
      absl::MutexLock lock(&timeouts_mu);
      if (shut_down) return;
      ++running_timeouts;
    }
    entry->timeout_timer.store(kNoTimer);
    if (Finish(entry, MakeSharedResult<T>(absl::UnavailableError(timeout_message)))) {
      timed_out.fetch_add(1, std::memory_order_relaxed);
      entry->stop.request_stop();
    }
    absl::MutexLock lock(&timeouts_mu);
    --running_timeouts;
  }

  // Counts `n` wake tasks about to be posted; false (post none) once StopWakes() ran.
  bool BeginWakes(size_t n) {
    absl::MutexLock lock(&wakes_mu);
    if (wakes_stopped) return false;
    pending_wakes += n;
    return true;
  }
  void EndWake() {
    absl::MutexLock lock(&wakes_mu);
    --pending_wakes;
  }
  // Makes later wakes run on the completing thread and waits for the posted ones: their waiters'
  // callbacks may point into the group's owner. Only the wake workers' share: the completing
  // thread's own share of a wake is its owner's to wait for (the FlightCache waits for its origin
  // callbacks, timers and fleet callbacks anyway). Must not be called from a waiter's callback.
  void StopWakes() {
    absl::MutexLock lock(&wakes_mu);
    wakes_stopped = true;
    wakes_mu.Await(absl::Condition(
        +[](size_t* n) { return *n == 0; }, &pending_wakes));
  }

  // Makes later timeouts no-ops and waits for those running now.
  void StopTimeouts() {
    absl::MutexLock lock(&timeouts_mu);
    shut_down = true;
    timeouts_mu.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &running_timeouts));
  }

  const AbandonPolicy policy;
  const absl::Duration load_timeout;
  const std::string timeout_message;
  TimerQueue& timers;
  RecheckHook recheck;
  StoreHook store;
  CompletedHook completed;
  WorkerPool* const wake_workers;  // null: every flight's waiters are woken by its completer
  const size_t wake_batch;
  std::vector<Shard> shards;
  absl::Mutex wakes_mu;
  size_t pending_wakes ABSL_GUARDED_BY(wakes_mu) = 0;
  bool wakes_stopped ABSL_GUARDED_BY(wakes_mu) = false;
  absl::Mutex timeouts_mu;
  bool shut_down ABSL_GUARDED_BY(timeouts_mu) = false;
  int running_timeouts ABSL_GUARDED_BY(timeouts_mu) = 0;
  // Relaxed: statistics only, never used to order other memory.
  std::atomic<int64_t> started{0}, inflight{0}, abandoned{0}, timed_out{0};
};

}  // namespace internal

// Given to the loader: the key, the load's stop token and deadline, and the one way to answer.
// Move-only. Destroying it unanswered completes the flight with INTERNAL.
template <typename T>
class LoadHandle final {
 public:
  LoadHandle(LoadHandle&&) noexcept = default;
  LoadHandle& operator=(LoadHandle&& other) noexcept {
    if (this != &other) {
      AbandonIfPending();
      entry_ = std::move(other.entry_);
      deadline_ = other.deadline_;
    }
    return *this;
  }
  LoadHandle(const LoadHandle&) = delete;
  LoadHandle& operator=(const LoadHandle&) = delete;
  ~LoadHandle() { AbandonIfPending(); }

  const std::string& key() const { return entry_->key; }
  std::stop_token stop_token() const { return entry_->stop.get_token(); }
  absl::Time deadline() const { return deadline_; }  // in the TimerQueue's clock
  bool cancelled() const { return entry_->stop.stop_requested(); }

  // Answers every waiter. Returns false if the flight was already complete (timed out,
  // cancelled) — then the result is dropped.
  bool Complete(absl::StatusOr<T> result) {
    if (entry_ == nullptr) return false;
    auto entry = std::move(entry_);
    return entry->Complete(MakeSharedResult<T>(std::move(result)));
  }

 private:
  template <typename U, typename Done>
  friend class SingleFlightGroup;
  LoadHandle(std::shared_ptr<internal::LoadTarget<T>> entry, absl::Time deadline)
      : entry_(std::move(entry)), deadline_(deadline) {}
  void AbandonIfPending() {
    if (entry_ != nullptr) {
      Complete(absl::InternalError("the load ended without a result (it threw or was dropped)"));
    }
  }

  std::shared_ptr<internal::LoadTarget<T>> entry_;
  absl::Time deadline_;
};

template <typename T, typename Done>
class SingleFlightGroup final {
 public:
  struct Options {
    AbandonPolicy abandon = AbandonPolicy::kCancel;
    absl::Duration load_timeout = absl::Seconds(5);
    // The UNAVAILABLE message of a timed-out load; empty: "load timed out after <load_timeout>".
    std::string timeout_message;
    int shard_count = 16;
    // If set, a flight with more than `wake_batch` waiters is answered by its completing thread
    // and these workers together, `wake_batch` waiters at a time (see GroupCore::Wake). Must
    // outlive the group.
    WorkerPool* wake_workers = nullptr;
    size_t wake_batch = 64;
  };
  // See the file comment. All optional. `completed(key, result)` runs once per flight, after it
  // left the table and before its waiters wake, with no lock held (for statistics).
  struct Hooks {
    typename internal::GroupCore<T, Done>::RecheckHook recheck;
    typename internal::GroupCore<T, Done>::StoreHook store;
    typename internal::GroupCore<T, Done>::CompletedHook completed;
  };

  using Outcome = JoinOutcome;
  using Loader = absl::AnyInvocable<void(LoadHandle<T>&&)>;
  // Gets the result and whether this caller started the flight or joined it (and the key, if it
  // takes one: see JoinOutcome). Kept by value in the flight while the caller waits.
  using Callback = Done;

  struct Joined {
    FlightWaiter waiter;
    Outcome outcome;
    SharedResult<T> answer;  // recheck()'s result, for kAnsweredByRecheck only
  };

  SingleFlightGroup(Options options, TimerQueue& timers, Hooks hooks = {})
      : core_(std::make_shared<internal::GroupCore<T, Done>>(
            options.abandon, options.load_timeout, std::move(options.timeout_message),
            options.shard_count, options.wake_workers, options.wake_batch, timers,
            std::move(hooks.recheck), std::move(hooks.store), std::move(hooks.completed))) {}

  ~SingleFlightGroup() { CancelAll(); }
  SingleFlightGroup(const SingleFlightGroup&) = delete;
  SingleFlightGroup& operator=(const SingleFlightGroup&) = delete;

  // Cancels every flight not yet complete, detached ones included: waiters get CANCELLED, stop
  // tokens fire. Waits for load timeouts running on the timer thread; later ones do nothing.
  // For shutdown: no Join() may follow.
  void CancelAll() {
    core_->StopTimeouts();
    core_->StopWakes();
    std::vector<std::shared_ptr<internal::FlightEntry<T, Done>>> remaining;
    for (auto& shard : core_->shards) {
      absl::MutexLock lock(&shard.mu);
      for (auto& [key, entry] : shard.flights) {
        entry->attached = false;
        remaining.push_back(entry);
      }
      shard.flights.clear();
      for (auto& [raw, entry] : shard.detached) remaining.push_back(entry);
      shard.detached.clear();
    }
    for (auto& entry : remaining) {
      core_->Finish(entry, MakeSharedResult<T>(absl::CancelledError("shutting down")));
      entry->stop.request_stop();
    }
  }

  // Joins `key`'s flight, or starts one by calling `loader` (on this thread, after the flight is
  // in the table). `done` runs exactly once with the result, or with CANCELLED after
  // waiter.Cancel() — unless the outcome is kAnsweredByRecheck, when it never runs.
  // `done` is moved from only when it will run (not for kAnsweredByRecheck).
  Joined Join(std::string_view key, Loader&& loader, Callback&& done) {
    auto& core = *core_;
    auto& shard = core.ShardFor(key);
    std::shared_ptr<internal::FlightEntry<T, Done>> entry;
    Outcome outcome = Outcome::kJoined;
    {
      absl::MutexLock lock(&shard.mu);
      auto it = shard.flights.find(internal::AbslView(key));
      if (it != shard.flights.end()) {
        entry = it->second;
      } else {
        if (core.recheck) {
          if (SharedResult<T> answer = core.recheck(key)) {
            return {FlightWaiter(), Outcome::kAnsweredByRecheck, std::move(answer)};
          }
        }
        entry = std::make_shared<internal::FlightEntry<T, Done>>(std::string(key), core_);
        entry->attached = true;
        shard.flights.emplace(entry->key, entry);
        outcome = Outcome::kStarted;
      }
      ++entry->waiters;  // under the lock: a flight with waiters is never cancelled
    }
    const uint64_t subscription =
        entry->state.Subscribe({.done = std::move(done), .outcome = outcome}, entry->key);
    if (outcome == Outcome::kStarted) Start(entry, std::move(loader));
    return {FlightWaiter(entry, subscription), outcome};
  }

  // Starts `key`'s flight with no waiter, unless one is already in flight (then the caller's
  // refresh is that flight). The flight holds a waiter reference of its own until it completes,
  // so callers who join and leave can never cancel it; it ends with its result, its load timeout,
  // Detach() plus completion, or CancelAll(). No recheck: the caller knows the cached entry needs
  // replacing. Returns true if it started a flight (the loader ran).
  bool StartBackground(std::string_view key, Loader&& loader) {
    auto& shard = core_->ShardFor(key);
    std::shared_ptr<internal::FlightEntry<T, Done>> entry;
    {
      absl::MutexLock lock(&shard.mu);
      if (shard.flights.contains(internal::AbslView(key))) return false;
      entry = std::make_shared<internal::FlightEntry<T, Done>>(std::string(key), core_);
      entry->attached = true;
      entry->waiters = 1;  // the flight's own reference, never released
      shard.flights.emplace(entry->key, entry);
    }
    Start(entry, std::move(loader));
    return true;
  }

  // Takes `key`'s flight (if any) out of the table so its result is not stored and later callers
  // start a new flight; its current waiters still get its result. `under_lock` runs inside the
  // same critical section (the cache erase goes there, so no completing load can slip between).
  // Returns true if a flight was detached.
  bool Detach(
      std::string_view key, absl::FunctionRef<void()> under_lock = [] {}) {
    auto& shard = core_->ShardFor(key);
    absl::MutexLock lock(&shard.mu);
    under_lock();
    auto it = shard.flights.find(internal::AbslView(key));
    if (it == shard.flights.end()) return false;
    it->second->attached = false;
    shard.detached.emplace(it->second.get(), std::move(it->second));
    shard.flights.erase(it);
    return true;
  }

  SingleFlightStats stats() const {
    SingleFlightStats s;
    s.started = core_->started.load(std::memory_order_relaxed);
    s.inflight = core_->inflight.load(std::memory_order_relaxed);
    s.abandoned = core_->abandoned.load(std::memory_order_relaxed);
    s.timed_out = core_->timed_out.load(std::memory_order_relaxed);
    return s;
  }

  // Flights in the table now (attached flights only).
  size_t size() const {
    size_t n = 0;
    for (auto& shard : core_->shards) {
      absl::MutexLock lock(&shard.mu);
      n += shard.flights.size();
    }
    return n;
  }

 private:
  void Start(const std::shared_ptr<internal::FlightEntry<T, Done>>& entry, Loader loader) {
    auto& core = *core_;
    core.started.fetch_add(1, std::memory_order_relaxed);
    core.inflight.fetch_add(1, std::memory_order_relaxed);
    const absl::Time deadline = core.timers.clock().Now() + core.load_timeout;
    entry->timeout_timer.store(
        core.timers.RunAt(deadline, [weak = std::weak_ptr<internal::FlightEntry<T, Done>>(entry)] {
          if (auto e = weak.lock()) e->core->OnTimeout(e);
        }));
    LoadHandle<T> handle(entry, deadline);
    // The one place loads run: an exception becomes INTERNAL for every waiter.
    try {
      loader(std::move(handle));
    } catch (const std::exception& e) {
      core.Finish(entry, MakeSharedResult<T>(
                             absl::InternalError(absl::StrCat("the load threw: ", e.what()))));
    } catch (...) {
      core.Finish(entry, MakeSharedResult<T>(
                             absl::InternalError("the load threw a non-standard exception")));
    }
  }

  std::shared_ptr<internal::GroupCore<T, Done>> core_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_INTERNAL_SINGLE_FLIGHT_H_
