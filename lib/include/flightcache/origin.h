// Origin: the slow backend flightcache protects, as the core sees it.
//
// An Origin fetches one key asynchronously: Fetch() returns at once and calls `done` exactly once
// later (or inline), on any thread. The fetch must stop promptly once `cancel` is triggered and
// then call `done` with CANCELLED (or whatever result it already had). Implementations live in
// server/ (gRPC, simulated) and tests/testing/ (fakes).
//
// Results: a value (with an optional TTL; zero means "use the server's default"), NOT_FOUND for a
// key that does not exist, or any other status for a failed fetch. Two codes are reserved: an
// Origin returns INTERNAL only for its own bugs or a garbled answer, and RESOURCE_EXHAUSTED only
// to mean "the value is larger than --max-value-bytes"; callers see those codes unchanged, and
// every other failure as UNAVAILABLE naming the origin's error.
//
// Thread-safety: Fetch() may be called concurrently from any thread.
#ifndef FLIGHTCACHE_ORIGIN_H_
#define FLIGHTCACHE_ORIGIN_H_

#include <cstdint>
#include <stop_token>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flightcache {

struct FetchRequest {
  std::string key;
  uint32_t attempt = 1;                          // 1 for the primary fetch, 2 for a hedge
  absl::Time deadline = absl::InfiniteFuture();  // the load's own timeout
};

struct FetchResult {
  std::string value;
  absl::Duration ttl = absl::ZeroDuration();  // zero: the server's default TTL
};

using FetchCallback = absl::AnyInvocable<void(absl::StatusOr<FetchResult>)>;

class Origin {
 public:
  virtual ~Origin() = default;

  // REQUIRES: `done` is called exactly once. Must not throw (a throw is caught and reported as
  // INTERNAL by the caller, but the fetch is then considered lost).
  virtual void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) = 0;

  // A short description for logs and error messages, e.g. "grpc://10.0.0.1:9000".
  virtual std::string Describe() const = 0;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_ORIGIN_H_
