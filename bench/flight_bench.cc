// Cost per waiter of joining one flight and being woken by its completion.
//
// Each iteration: kWaiters callers join one key's flight (the first starts it), then the load
// completes and wakes them all. Reported per waiter (items_per_second). Target: <= 1 us/waiter.
// The baseline in the same binary is the bare Flight (Promise/Future) with the same number of
// subscribers, i.e. what the group's bookkeeping (table, refcount, waiter handle) adds on top.
//
// BM_WakeWaiters/W/T: the wake alone, from the load's completion to the last waiter's callback
// returned, for W waiters whose callbacks each do ~5 us of work (a stand-in for a server
// reactor's Finish: serialising the response and starting gRPC's send), with T wake workers (0:
// the completing thread answers every waiter, as before issue 15). The ratio of T=0 to T>0 in one
// run is the figure; on an idle machine it approaches the number of cores used.
#include <time.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "flightcache/flight.h"
#include "flightcache/timer_queue.h"
#include "flightcache/worker_pool.h"
#include "internal/single_flight.h"

namespace flightcache {
namespace {

void BM_GroupJoinAndWake(benchmark::State& state) {
  const int waiters = static_cast<int>(state.range(0));
  ThreadTimerQueue timers;
  SingleFlightGroup<std::string> group({.load_timeout = absl::Seconds(60)}, timers);
  std::vector<FlightWaiter> handles(waiters);
  int64_t woken = 0;
  for (auto _ : state) {
    std::optional<LoadHandle<std::string>> load;
    for (int i = 0; i < waiters; ++i) {
      handles[i] = group
                       .Join(
                           "key", [&](LoadHandle<std::string>&& h) { load.emplace(std::move(h)); },
                           [&](const SharedResult<std::string>& r, auto) { woken += r->ok(); })
                       .waiter;
    }
    load->Complete(std::string("value"));
  }
  if (woken != static_cast<int64_t>(state.iterations()) * waiters) state.SkipWithError("lost");
  state.SetItemsProcessed(state.iterations() * waiters);
}
BENCHMARK(BM_GroupJoinAndWake)->Arg(1000);

void BM_BareFlightSubscribeAndWake(benchmark::State& state) {
  const int waiters = static_cast<int>(state.range(0));
  int64_t woken = 0;
  std::vector<Subscription<std::string>> subs(waiters);
  for (auto _ : state) {
    Promise<std::string> promise;
    Future<std::string> future = promise.GetFuture();
    for (int i = 0; i < waiters; ++i) {
      subs[i] = future.OnComplete([&](const SharedResult<std::string>& r) { woken += r->ok(); });
    }
    promise.Complete(std::string("value"));
  }
  if (woken != static_cast<int64_t>(state.iterations()) * waiters) state.SkipWithError("lost");
  state.SetItemsProcessed(state.iterations() * waiters);
}
BENCHMARK(BM_BareFlightSubscribeAndWake)->Arg(1000);

// This thread's CPU time, in nanoseconds.
int64_t ThreadCpuNs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

// `ns` nanoseconds of this thread's CPU time (not wall time: a thread that is not running does
// not progress, as with real work).
void Work(int64_t ns) {
  const int64_t until = ThreadCpuNs() + ns;
  while (ThreadCpuNs() < until) {
  }
}

void BM_WakeWaiters(benchmark::State& state) {
  const int waiters = static_cast<int>(state.range(0));
  const int workers = static_cast<int>(state.range(1));
  constexpr int64_t kWorkPerWaiterNs = 5'000;
  ThreadTimerQueue timers;
  std::unique_ptr<WorkerPool> pool = workers > 0 ? std::make_unique<WorkerPool>(workers) : nullptr;
  SingleFlightGroup<std::string> group(
      {.load_timeout = absl::Seconds(60), .wake_workers = pool.get()}, timers);
  std::vector<FlightWaiter> handles(waiters);
  std::atomic<int64_t> woken{0};
  int64_t expected = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::optional<LoadHandle<std::string>> load;
    for (int i = 0; i < waiters; ++i) {
      handles[i] = group
                       .Join(
                           "key", [&](LoadHandle<std::string>&& h) { load.emplace(std::move(h)); },
                           [&](const SharedResult<std::string>& r, auto) {
                             Work(kWorkPerWaiterNs);
                             woken.fetch_add(r->ok() ? 1 : 0, std::memory_order_acq_rel);
                           })
                       .waiter;
    }
    expected += waiters;
    state.ResumeTiming();
    load->Complete(std::string("value"));
    while (woken.load(std::memory_order_acquire) < expected) std::this_thread::yield();
  }
  if (woken.load() != expected) state.SkipWithError("lost");
  state.SetItemsProcessed(state.iterations() * waiters);
  state.counters["workers"] = workers;
}
BENCHMARK(BM_WakeWaiters)
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Args({10000, 0})
    ->Args({10000, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flightcache
