// Target: the system under load, as the runner sees it — one asynchronous call at a time.
//
// The production Target is GrpcTarget (grpc_target.h: Get/BatchGet/Invalidate over the gRPC
// callback API); tests use fakes that answer inline, later from a timer, or stall. Keeping the
// runner behind this seam keeps it free of gRPC, so its scheduling logic is unit-tested (also
// under TSan).
//
// Thread-safety: Start() may be called concurrently from any thread. `done` may run on any
// thread, including inline inside Start(); it must not block.
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_TARGET_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_TARGET_H_

#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "client/loadgen/call_kind.h"
#include "client/loadgen/recorder.h"

namespace flightcache::loadgen {

struct CallSpec {
  CallKind kind = CallKind::kGet;  // Get(keys[0]), BatchGet(keys) or Invalidate(keys)
  std::vector<std::string> keys;
  absl::Duration deadline = absl::Seconds(1);
};

// One ItemResult per key of the call, in order; a failed RPC gives every key the RPC's status.
// An Invalidate's keys all get the RPC's status (and no Source).
using CallDone = absl::AnyInvocable<void(std::vector<ItemResult>)>;

class Target {
 public:
  virtual ~Target() = default;
  // REQUIRES: `done` is called exactly once.
  virtual void Start(CallSpec call, CallDone done) = 0;
};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_TARGET_H_
