// OriginService: the demo origin's gRPC adapter — flightcache.v1.Origin over the callback API.
//
// Each Fetch asks the OriginModel (lib's flightcache/sim/origin_model.h, the model the server's
// sim:// origin runs too) for a plan, then answers what the model says from a TimerQueue timer
// after the plan's latency: no thread sleeps per fetch, so thousands of slow fetches cost memory
// only.
// When the client cancels (flightcache cancelling an abandoned load, a lost hedge, or the
// load's own deadline), ServerUnaryReactor::OnCancel() finishes the call at once with CANCELLED
// and the model counts a cancellation.
//
// StartDraining() makes every later Fetch fail at once with UNAVAILABLE, so that a shutdown only
// waits for the fetches already in flight.
//
// Thread-safety: thread-safe; gRPC calls Fetch() concurrently.
// Lifetime: the model and the timer queue must outlive the grpc::Server this is registered with
// (shut the server down first, then destroy the timer queue).
#ifndef FLIGHTCACHE_CLIENT_ORIGIN_ORIGIN_SERVICE_H_
#define FLIGHTCACHE_CLIENT_ORIGIN_ORIGIN_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>

#include "flightcache/sim/origin_model.h"
#include "flightcache/timer_queue.h"
#include "flightcache/v1/origin.grpc.pb.h"

namespace flightcache::demo_origin {

class OriginService final : public flightcache::v1::Origin::CallbackService {
 public:
  OriginService(sim::OriginModel& model, TimerQueue& timers) : model_(model), timers_(timers) {}
  OriginService(const OriginService&) = delete;
  OriginService& operator=(const OriginService&) = delete;

  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                  const flightcache::v1::FetchRequest* request,
                                  flightcache::v1::FetchResponse* response) override;

  void StartDraining() { draining_.store(true, std::memory_order_relaxed); }

 private:
  sim::OriginModel& model_;
  TimerQueue& timers_;
  std::atomic<bool> draining_{false};  // relaxed: a flag that orders no other data
};

}  // namespace flightcache::demo_origin

#endif  // FLIGHTCACHE_CLIENT_ORIGIN_ORIGIN_SERVICE_H_
