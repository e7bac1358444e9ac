// CallKind: which Cache RPC one load generator call is. Shared by the workload (which draws the
// mix), the runner, the targets and the recorder (which counts calls by kind), so it has a header
// of its own with no dependencies.
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_CALL_KIND_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_CALL_KIND_H_

namespace flightcache::loadgen {

enum class CallKind { kGet = 0, kBatchGet = 1, kInvalidate = 2 };
inline constexpr int kCallKindCount = 3;

// The RPC's name: "Get", "BatchGet", "Invalidate".
constexpr const char* CallKindName(CallKind kind) {
  switch (kind) {
    case CallKind::kGet:
      return "Get";
    case CallKind::kBatchGet:
      return "BatchGet";
    case CallKind::kInvalidate:
      return "Invalidate";
  }
  return "?";
}

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_CALL_KIND_H_
