// CacheService: flightcache.v1.Cache on gRPC's callback API — the thin adapter between the wire
// and FlightCache.
//
// Each RPC is a ServerUnaryReactor that converts the request, calls the core, and finishes from
// the core's completion callback; it deletes itself in OnDone(). The methods are gRPC's raw
// (ByteBuffer) callback methods: the service parses each request and serialises each response
// itself, so that a request that is not a valid protobuf gets INVALID_ARGUMENT with a message
// (gRPC's typed handlers answer it UNIMPLEMENTED with none, as if the method did not exist).
// Waiting for a load therefore never blocks a thread. When a call ends early (client cancel or
// deadline), OnCancel() cancels its GetHandle(s): that waiter leaves the flight, and the last
// waiter to leave cancels the load.
//
// - Get: one FlightCache::Get.
// - BatchGet: one reactor, one FlightCache::Get per key (so each key goes through the same
//   coalescing path, duplicates included), an atomic countdown; results in request order, each
//   with the code a Get of that key alone would return. 0 keys, or more than max_batch_keys, is
//   INVALID_ARGUMENT.
// - Invalidate: FlightCache::Invalidate (generation semantics live in the core). Each key must be
//   a valid key and there may be at most max_batch_keys of them (INVALID_ARGUMENT otherwise). An
//   admin call: a caller the AdminGuard refuses gets PERMISSION_DENIED before the request is read
//   (counted in Stats.permission_denied, logged at most once a second).
// - Stats: FlightCache::stats().
// Once BeginDrain() was called, every new call gets UNAVAILABLE; calls already running finish.
//
// Thread-safety: thread-safe. Lifetime: the FlightCache and Metrics must outlive the service, and
// the service must outlive the grpc::Server it is registered with (i.e. until Server::Wait()
// returned).
#ifndef FLIGHTCACHE_SERVER_CACHE_SERVICE_H_
#define FLIGHTCACHE_SERVER_CACHE_SERVICE_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <cstdint>

#include "flightcache/flight_cache.h"
#include "flightcache/timer_queue.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "flightcache/worker_pool.h"
#include "server/admin_guard.h"
#include "server/logging.h"
#include "server/metrics.h"

namespace flightcache {

struct CacheServiceOptions {
  int64_t max_batch_keys = 1000;
  int64_t max_key_bytes = 4096;
  // If set, a Get that waits for a load leaves it at the caller's deadline by this queue's timer,
  // instead of when gRPC reports the deadline (milliseconds later under load): the origin call
  // of a load whose last waiter that was is cancelled sooner. Must outlive the service's calls.
  TimerQueue* deadline_timers = nullptr;
  // If set, what a caller's deadline triggers (leaving its flights: the origin call's
  // cancellation, the reactor's Finish) runs on these workers instead of the timer's thread, so
  // that one wait inside gRPC does not delay every deadline due behind it. Must outlive the
  // deadline timers' thread.
  WorkerPool* deadline_workers = nullptr;
  // Who may call Invalidate (see admin_guard.h); null: everyone (tests of other methods). Must
  // outlive the service.
  const AdminCheck* admin = nullptr;
};

// Every method of flightcache.v1.Cache as a raw callback method.
using RawCacheService = v1::Cache::WithRawCallbackMethod_Get<
    v1::Cache::WithRawCallbackMethod_BatchGet<v1::Cache::WithRawCallbackMethod_Invalidate<
        v1::Cache::WithRawCallbackMethod_Stats<v1::Cache::Service>>>>;

class CacheService final : public RawCacheService {
 public:
  // `metrics` may be null.
  CacheService(FlightCache& cache, CacheServiceOptions options, Metrics* metrics);
  CacheService(const CacheService&) = delete;
  CacheService& operator=(const CacheService&) = delete;

  // Each request is a serialised v1::<Method>Request, each reply a v1::<Method>Response.
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const grpc::ByteBuffer* request, grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* BatchGet(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* Invalidate(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* reply) override;

  // From now on, new calls get UNAVAILABLE. Idempotent; true for the call that began draining.
  bool BeginDrain() { return !draining_.exchange(true, std::memory_order_acq_rel); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  // Calls started and not yet done (their reactors' OnDone has not run).
  int64_t calls_in_flight() const { return in_flight_.load(std::memory_order_acquire); }

 private:
  class Reactor;
  class GetReactor;
  class BatchGetReactor;

  // OK if a new call may start: the server is not draining (else UNAVAILABLE) and `request`
  // parses into `message` (else INVALID_ARGUMENT). A call without a request message is one whose
  // client left before the message arrived: it is answered as it ended (DEADLINE_EXCEEDED, else
  // CANCELLED; only metrics see it) and counted as unread, not blamed on the client as a bad
  // request.
  absl::Status Admit(RpcMethod method, const grpc::CallbackServerContext& context,
                     const grpc::ByteBuffer& request, google::protobuf::Message& message) const;
  // A call answered `error` at once.
  grpc::ServerUnaryReactor* Refuse(RpcMethod method, grpc::ByteBuffer* reply,
                                   const absl::Status& error);

  FlightCache& cache_;
  const CacheServiceOptions options_;
  Metrics* const metrics_;
  // Release/acquire: a call that sees the flag set was started after BeginDrain().
  std::atomic<bool> draining_{false};
  // Acq/rel with the drain loop, which waits for zero before shutting the server down.
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> permission_denied_{0};  // statistics only
  LogRateLimiter denied_log_{absl::Seconds(1)};
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_CACHE_SERVICE_H_
