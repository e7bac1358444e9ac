#include "client/origin/origin_service.h"

#include <atomic>
#include <chrono>
#include <utility>

namespace flightcache::demo_origin {
namespace {

namespace pb = ::flightcache::v1;
using sim::FetchEnd;
using sim::FetchOutcome;
using sim::FetchPlan;
using sim::OriginModel;

grpc::Status ToGrpc(const absl::Status& status) {
  // absl and gRPC number their status codes alike.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// One Fetch in flight. Two parties hold it: gRPC (until OnDone) and the answer timer (until it
// has run or been cancelled); it deletes itself when both have let go — the two-level
// refcounting of gRPC's own reactors. Exactly one of the timer and OnCancel finishes the call:
// whoever wins `finished_`.
class FetchReactor final : public grpc::ServerUnaryReactor {
 public:
  FetchReactor(OriginModel& model, TimerQueue& timers, grpc::CallbackServerContext* context,
               const pb::FetchRequest* request, pb::FetchResponse* response)
      : model_(model),
        timers_(timers),
        context_(context),
        response_(response),
        key_(request->key()),
        plan_(model_.BeginFetch(key_, request->attempt())) {
    if (plan_.outcome == FetchOutcome::kRejected) {
      finished_.store(true, std::memory_order_relaxed);
      refs_.store(1, std::memory_order_relaxed);  // no timer
      Finish(ToGrpc(OriginModel::RejectedStatus()));
      return;
    }
    // The timer may fire before this constructor returns; it touches nothing set below.
    timer_ = timers_.RunAfter(plan_.latency, [this] { OnTimer(); });
  }

  void OnCancel() override {
    if (!TryClaimFinish()) return;  // already answered
    // When the client's deadline passes, its RST_STREAM often beats the server's own deadline
    // timer (the server's copy of the deadline is a little later), so a cancel this close to
    // the deadline counts as the deadline's.
    const bool deadline =
        context_->deadline() - std::chrono::system_clock::now() < std::chrono::milliseconds(100);
    (void)model_.EndFetch(key_, plan_,
                          deadline ? FetchEnd::kDeadlineExceeded : FetchEnd::kCancelled);
    Finish(grpc::Status::CANCELLED);
    // If the timer is still pending it will never run: drop its reference for it. If it is
    // running right now, it drops its own reference after losing the claim.
    if (timers_.Cancel(timer_)) Unref();
  }

  void OnDone() override { Unref(); }

 private:
  void OnTimer() {
    if (TryClaimFinish()) {
      absl::StatusOr<FetchResult> answer = model_.EndFetch(key_, plan_, FetchEnd::kAnswered);
      if (answer.ok()) {
        response_->set_value(std::move(answer->value));
        response_->set_ttl_ms(absl::ToInt64Milliseconds(answer->ttl));
        Finish(grpc::Status::OK);
      } else {
        Finish(ToGrpc(answer.status()));
      }
    }
    Unref();
  }

  // acq_rel: the winner's later writes (the response) must not be reordered before the claim.
  bool TryClaimFinish() { return !finished_.exchange(true, std::memory_order_acq_rel); }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  OriginModel& model_;
  TimerQueue& timers_;
  grpc::CallbackServerContext* const context_;
  pb::FetchResponse* const response_;
  const std::string key_;
  const FetchPlan plan_;
  TimerId timer_ = kNoTimer;
  std::atomic<bool> finished_{false};
  std::atomic<int> refs_{2};  // gRPC (OnDone) + the answer timer
};

}  // namespace

grpc::ServerUnaryReactor* OriginService::Fetch(grpc::CallbackServerContext* context,
                                               const pb::FetchRequest* request,
                                               pb::FetchResponse* response) {
  if (draining_.load(std::memory_order_relaxed)) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "origin: shutting down"));
    return reactor;
  }
  return new FetchReactor(model_, timers_, context, request, response);
}

}  // namespace flightcache::demo_origin
