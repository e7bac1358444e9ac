// GetBlocking: FlightCache::Get that waits, for tests. The core itself never blocks.
//
// Waits at most until `ctx` ends; then leaves the flight (the load goes on for other waiters) and
// returns the context's status.
#ifndef FLIGHTCACHE_TESTS_TESTING_GET_BLOCKING_H_
#define FLIGHTCACHE_TESTS_TESTING_GET_BLOCKING_H_

#include <string_view>
#include <utility>

#include "flightcache/call_context.h"
#include "flightcache/flight.h"
#include "flightcache/flight_cache.h"

namespace flightcache::testing {

inline GetResult GetBlocking(FlightCache& cache, std::string_view key, const CallContext& ctx) {
  Promise<GetResult> promise;
  Future<GetResult> future = promise.GetFuture();
  GetHandle handle = cache.Get(
      key, [promise = std::move(promise)](GetResult r) mutable { promise.Complete(std::move(r)); });
  SharedResult<GetResult> result = future.Await(ctx);
  if (!result->ok()) {
    handle.Cancel();  // leave the flight: our deadline or cancellation ended the wait
    return GetResult{.status = result->status()};
  }
  return **result;
}

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_GET_BLOCKING_H_
