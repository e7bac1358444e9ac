// Cost per waiter of joining one flight and being woken by its completion.
//
// Each iteration: kWaiters callers join one key's flight (the first starts it), then the load
// completes and wakes them all. Reported per waiter (items_per_second). Target: <= 1 us/waiter.
// The baseline in the same binary is the bare Flight (Promise/Future) with the same number of
// subscribers, i.e. what the group's bookkeeping (table, refcount, waiter handle) adds on top.
#include <optional>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "flightcache/flight.h"
#include "flightcache/timer_queue.h"
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

}  // namespace
}  // namespace flightcache
