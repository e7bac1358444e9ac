#include "server/cache_service.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/get_reply.h"
#include "server/status_mapping.h"
#include "spdlog/spdlog.h"

namespace flightcache {
namespace {

// Protobuf cannot serialise a message of 2 GiB or more; stay well below.
constexpr int64_t kMaxResponseBytes = (int64_t{2} << 30) - (int64_t{64} << 20);

// A call that ended because its client went away: DEADLINE_EXCEEDED if its deadline is the
// reason, else CANCELLED. Only metrics see this — the client has already stopped listening.
absl::Status WhyCallEnded(const grpc::CallbackServerContext& context) {
  if (context.deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("call deadline exceeded");
  }
  return absl::CancelledError("call cancelled by the client");
}

// Parses a request's bytes into `message`; INVALID_ARGUMENT naming the message type if they are not
// one.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::Message& message) {
  bool parsed = false;
  if (grpc::Slice slice; bytes.TrySingleSlice(&slice).ok()) {
    // The usual case (an uncompressed request in one slice): parsed in place.
    parsed = message.ParseFromArray(slice.begin(), static_cast<int>(slice.size()));
  } else {
    grpc::ByteBuffer shared(bytes);  // the reader wants a mutable buffer; this one shares slices
    grpc::ProtoBufferReader reader(&shared);
    parsed = reader.status().ok() && message.ParseFromZeroCopyStream(&reader);
  }
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat("the request (", bytes.Length(),
                                                   " bytes) is not a valid ",
                                                   message.GetDescriptor()->full_name()));
  }
  return absl::OkStatus();
}

// The call's authorization metadata, if it has one.
std::optional<absl::string_view> Authorization(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

absl::Status CheckKey(const std::string& key, int64_t max_key_bytes) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  if (static_cast<int64_t>(key.size()) > max_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key is ", key.size(), " bytes; the limit (--max-key-bytes) is ", max_key_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

// Every reactor of this service: counts itself in flight, records its outcome in the metrics,
// and deletes itself when gRPC is done with it. Used as is for calls that finish at once.
class CacheService::Reactor : public grpc::ServerUnaryReactor {
 public:
  Reactor(CacheService& service, RpcMethod method, grpc::ByteBuffer* reply)
      : service_(service), method_(method), reply_(*reply) {
    service_.in_flight_.fetch_add(1, std::memory_order_acq_rel);
  }

  // Records the call in the metrics and finishes it with an error. After this, gRPC may run
  // OnDone (and delete the reactor) on another thread at any moment: it must be the caller's last
  // use of `this`.
  void FinishWithError(grpc::Status error) { Done(std::move(error)); }

  // Finishes the call OK with `response` as its reply (as FinishWithError: the last use of
  // `this`).
  void FinishWith(const google::protobuf::MessageLite& response) {
    bool own_buffer = false;
    Done(grpc::SerializationTraits<google::protobuf::MessageLite>::Serialize(response, &reply_,
                                                                             &own_buffer));
  }

  // Finishes the call OK with `reply` (a serialised response) as its reply (as FinishWithError:
  // the last use of `this`).
  // Taken by rvalue reference: gRPC's ByteBuffer has no move constructor, and a copy allocates.
  void FinishWithBytes(grpc::ByteBuffer&& reply) {
    reply_.Swap(&reply);
    Done(grpc::Status::OK);
  }

  void OnDone() override {
    CacheService& service = service_;
    delete this;
    service.in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  }

  // Once the call is answered, this reactor's reactions are trivial: OnDone frees it, and
  // OnCancel finds nothing left to leave. gRPC then runs them on the thread that completes the
  // call instead of handing each one to its executor, a thread hop (and a context switch) per
  // call that otherwise costs a hit more CPU than the cache lookup itself. gRPC marks this hook
  // as meant for its own trivial reactors; ours are, from the answer on. Before the answer it
  // says false: a waiting call's OnCancel leaves its flights, which is no work for gRPC's thread.
  bool InternalInlineable() override { return answered_.load(std::memory_order_acquire); }

 protected:
  ~Reactor() override = default;

  CacheService& service_;

 private:
  void Done(grpc::Status status) {
    if (service_.metrics_ != nullptr) {
      service_.metrics_->RecordRequest(method_, status.error_code());
    }
    answered_.store(true, std::memory_order_release);
    Finish(std::move(status));
  }

  const RpcMethod method_;
  grpc::ByteBuffer& reply_;  // gRPC's, valid until the call is finished
  // Set before Finish: from then on every reaction is trivial (see InternalInlineable).
  std::atomic<bool> answered_{false};
};

namespace {

// What a waiting call (Get or BatchGet) shares with its deadline timer, which may outlive the
// reactor: the handles that leave its flights, whichever of the timer, OnCancel and the answer
// comes first. FlightWaiter::Cancel wants one caller at a time, hence handles are taken out
// under the lock before they are cancelled.
class CallWait final : public std::enable_shared_from_this<CallWait> {
 public:
  // A Get leaves one flight, a BatchGet one per key: one handle is kept in place.
  using Handles = absl::InlinedVector<GetHandle, 1>;

  // Keeps `handles` for Leave() and arms a timer at `deadline` (none if `options` has no timers
  // or the deadline is not a real one), unless the call has answered already.
  static void Arm(const std::shared_ptr<CallWait>& wait, Handles handles,
                  const CacheServiceOptions& options,
                  std::chrono::system_clock::time_point deadline) {
    TimerQueue* const timers = options.deadline_timers;
    absl::MutexLock lock(&wait->mu_);
    if (wait->answered_) return;
    wait->handles_ = std::move(handles);
    // Compared before subtracting, so that no deadline gRPC reports can overflow the difference.
    const auto now = std::chrono::system_clock::now();
    if (timers == nullptr || deadline >= now + std::chrono::hours(24)) return;
    const absl::Duration remaining =
        deadline <= now ? absl::ZeroDuration() : absl::FromChrono(deadline - now);
    wait->timers_ = timers;
    wait->workers_ = options.deadline_workers;
    // Captures only `wait` (no more than the callback's inline storage): no allocation for it.
    wait->timer_ = timers->RunAfter(remaining, [wait] { wait->OnDeadline(); });
  }

  // Leaves every flight (their callbacks then run with CANCELLED) unless the call has answered.
  void Leave(bool because_deadline) {
    Handles leaving;
    {
      absl::MutexLock lock(&mu_);
      if (answered_) return;
      left_ = true;
      deadline_passed_ = deadline_passed_ || because_deadline;
      leaving = std::move(handles_);
    }
    for (GetHandle& handle : leaving) handle.Cancel();
  }

  // Whether the call's deadline timer made it leave.
  bool deadline_passed() {
    absl::MutexLock lock(&mu_);
    return deadline_passed_;
  }

  struct End {
    bool left;             // Leave() ran: the client cancelled or the deadline passed
    bool deadline_passed;  // ... by the deadline timer
  };
  // The call is answering: nothing leaves from now on, and the timer is disarmed.
  End Answer() {
    TimerId timer;
    End end;
    {
      absl::MutexLock lock(&mu_);
      answered_ = true;
      timer = std::exchange(timer_, kNoTimer);
      end = {left_, deadline_passed_};
    }
    if (timer != kNoTimer) timers_->Cancel(timer);
    return end;
  }

 private:
  // On the timer thread.
  void OnDeadline() {
    if (workers_ == nullptr) {
      Leave(/*because_deadline=*/true);
      return;
    }
    // Leaving may wait inside gRPC (the origin call's cancellation, the reactor's Finish): off
    // the timer thread, that wait cannot hold back the deadlines due behind this one.
    workers_->Post([wait = shared_from_this()] { wait->Leave(/*because_deadline=*/true); });
  }

  absl::Mutex mu_;
  Handles handles_ ABSL_GUARDED_BY(mu_);
  TimerQueue* timers_ ABSL_GUARDED_BY(mu_) = nullptr;
  WorkerPool* workers_ = nullptr;  // written by Arm() before the timer exists, then read-only
  TimerId timer_ ABSL_GUARDED_BY(mu_) = kNoTimer;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  bool left_ ABSL_GUARDED_BY(mu_) = false;
  bool deadline_passed_ ABSL_GUARDED_BY(mu_) = false;
};

// Why a call that left its flights ended: its own deadline timer, or what gRPC reported.
absl::Status WhyCallEnded(const grpc::CallbackServerContext& context, const CallWait::End& end) {
  if (end.deadline_passed) return absl::DeadlineExceededError("call deadline exceeded");
  return WhyCallEnded(context);
}

}  // namespace

class CacheService::GetReactor final : public Reactor {
 public:
  GetReactor(CacheService& service, grpc::CallbackServerContext* context, grpc::ByteBuffer* reply)
      : Reactor(service, RpcMethod::kGet, reply), context_(*context) {}

  // May finish the call before it returns (a hit, or a bad key).
  void Start(const std::string& key) {
    // Checked here, not only in the core, so that the message names the server's flag.
    if (absl::Status bad = CheckKey(key, service_.options_.max_key_bytes); !bad.ok()) {
      FinishWithError(ToGrpcStatus(bad));
      return;
    }
    if (AnswerFromCache(key)) return;  // hits need no wait state
    // OnCancel cannot run before the method handler has returned this reactor, and the timer is
    // armed below, so nobody reads `wait_` or the handle before they are set. OnResult may run
    // inline or on another thread at any moment from here: it marks the wait answered.
    wait_ = std::make_shared<CallWait>();
    CallWait::Handles handles;
    handles.push_back(
        service_.cache_.Get(key, [this](GetResult result) { OnResult(std::move(result)); }));
    CallWait::Arm(wait_, std::move(handles), service_.options_, context_.deadline());
  }

  // The client cancelled or its deadline passed: leave the flight (the load goes on for others,
  // or is cancelled if we were its last waiter). `OnResult` then runs with CANCELLED.
  void OnCancel() override {
    if (wait_ != nullptr) wait_->Leave(/*because_deadline=*/false);
  }

 private:
  // A hit answered straight from the cache: the value is copied into the reply's one slice
  // while the cache holds the entry, without taking a reference to it (see FlightCache::ReadHit).
  bool AnswerFromCache(const std::string& key) {
    bool negative = false;
    grpc::ByteBuffer reply;
    if (!service_.cache_.ReadHit(key, [&](const CacheEntryView& entry) {
          negative = entry.negative;
          if (negative) return;
          grpc::ByteBuffer bytes = GetReplyBytesCopying(
              entry.value, {.source = v1::SOURCE_HIT,
                            .ttl_remaining_ms = absl::ToInt64Milliseconds(entry.ttl_remaining)});
          reply.Swap(&bytes);  // not `reply = ...`: ByteBuffer's only assignment copies
        })) {
      return false;
    }
    if (negative) {
      FinishWithError(ToGrpcStatus(absl::NotFoundError("key not found (cached)")));
      return true;
    }
    FinishWithBytes(std::move(reply));
    return true;
  }

  void OnResult(GetResult result) {
    const CallWait::End end = wait_->Answer();
    if (!result.status.ok()) {
      if (absl::IsCancelled(result.status)) result.status = WhyCallEnded(context_, end);
      FinishWithError(ToGrpcStatus(result.status));
      return;
    }
    // Built only now: a waiting call holds no response. A large value is referred to, not
    // copied, so a load's N waiters do not make N copies of it (see get_reply.h).
    FinishWithBytes(
        GetReplyBytes({.value = std::move(result.value),
                       .source = ToProtoSource(result.source),
                       .ttl_remaining_ms = absl::ToInt64Milliseconds(result.ttl_remaining),
                       .stale_ms = absl::ToInt64Milliseconds(result.stale_for)}));
  }

  const grpc::CallbackServerContext& context_;
  std::shared_ptr<CallWait> wait_;  // set by Start() unless the cache answered at once
};

class CacheService::BatchGetReactor final : public Reactor {
 public:
  BatchGetReactor(CacheService& service, grpc::CallbackServerContext* context,
                  grpc::ByteBuffer* reply)
      : Reactor(service, RpcMethod::kBatchGet, reply), context_(*context) {}

  // May finish the call before it returns (every key a hit, or a bad request).
  void Start(const v1::BatchGetRequest& request) {
    const int n = request.keys_size();
    if (n == 0) {
      FinishWithError(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "BatchGet needs at least 1 key"));
      return;
    }
    if (n > service_.options_.max_batch_keys) {
      FinishWithError(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("BatchGet of ", n, " keys; the limit (--max-batch-keys) is ",
                                    service_.options_.max_batch_keys)));
      return;
    }
    // Every result slot exists before the first Get, so completions on other threads each write
    // only their own slot and never touch the repeated field itself.
    slots_.reserve(n);
    for (const std::string& key : request.keys()) {
      v1::KeyResult* slot = response_.add_results();
      slot->set_key(key);
      slots_.push_back(slot);
    }
    pending_.store(n, std::memory_order_relaxed);
    wait_ = std::make_shared<CallWait>();
    CallWait::Handles handles;
    handles.reserve(n);
    for (int i = 0; i < n; ++i) {
      // A bad key is that key's INVALID_ARGUMENT, worded as a Get of it alone would be.
      if (absl::Status bad = CheckKey(request.keys(i), service_.options_.max_key_bytes);
          !bad.ok()) {
        OnResult(i, GetResult{.status = std::move(bad)});
        continue;
      }
      handles.push_back(service_.cache_.Get(
          request.keys(i), [this, i](GetResult result) { OnResult(i, std::move(result)); }));
    }
    CallWait::Arm(wait_, std::move(handles), service_.options_, context_.deadline());
  }

  // The client cancelled or its deadline passed: every key still waiting leaves its flight.
  void OnCancel() override {
    if (wait_ != nullptr) wait_->Leave(/*because_deadline=*/false);
  }

 private:
  void OnResult(int i, GetResult result) {
    v1::KeyResult& slot = *slots_[i];
    if (absl::IsCancelled(result.status)) {
      result.status =
          WhyCallEnded(context_, {.left = true, .deadline_passed = wait_->deadline_passed()});
    }
    const grpc::StatusCode code = ToGrpcCode(result.status.code());
    slot.set_code(static_cast<int32_t>(code));
    slot.set_source(ToProtoSource(result.source));
    if (result.status.ok()) {
      if (result.value != nullptr) {
        slot.set_value(result.value.data(), result.value.size());
        response_bytes_.fetch_add(static_cast<int64_t>(result.value.size()),
                                  std::memory_order_relaxed);
      }
      slot.set_ttl_remaining_ms(absl::ToInt64Milliseconds(result.ttl_remaining));
      slot.set_stale_ms(absl::ToInt64Milliseconds(result.stale_for));
    } else {
      slot.set_message(std::string(result.status.message()));
    }
    if (service_.metrics_ != nullptr) service_.metrics_->RecordBatchKey(code);
    // acq_rel: the last completion sees every other completion's slot writes before Finish
    // serialises the response.
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) Complete();
  }

  void Complete() {
    if (const CallWait::End end = wait_->Answer(); end.left) {
      FinishWithError(ToGrpcStatus(WhyCallEnded(context_, end)));
      return;
    }
    if (response_bytes_.load(std::memory_order_relaxed) > kMaxResponseBytes) {
      FinishWithError(
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       "BatchGet response would exceed the 2 GiB message limit; ask for "
                       "fewer keys at a time"));
      return;
    }
    FinishWith(response_);
  }

  const grpc::CallbackServerContext& context_;
  v1::BatchGetResponse response_;
  std::vector<v1::KeyResult*> slots_;  // written before the first Get, then read-only
  std::shared_ptr<CallWait> wait_;     // set by Start() before the first Get
  // Keys not yet answered.
  std::atomic<int> pending_{0};
  // Relaxed: read only by the last completion, which the acq_rel countdown orders after them.
  std::atomic<int64_t> response_bytes_{0};
};

CacheService::CacheService(FlightCache& cache, CacheServiceOptions options, Metrics* metrics)
    : cache_(cache), options_(options), metrics_(metrics) {}

absl::Status CacheService::Admit(RpcMethod method, const grpc::CallbackServerContext& context,
                                 const grpc::ByteBuffer& request,
                                 google::protobuf::Message& message) const {
  if (draining()) return absl::UnavailableError("server is draining for shutdown");
  if (!request.Valid()) {
    // No request message at all. A gRPC client always sends one: its call ended (cancelled, or
    // its deadline, which can fall before ours, passed) before the message arrived, even when
    // gRPC has not marked the context cancelled yet. Not a bad request: counted as unread.
    if (metrics_ != nullptr) metrics_->RecordUnreadRequest(method);
    if (context.deadline() <= std::chrono::system_clock::now()) {
      return absl::DeadlineExceededError("call deadline exceeded");
    }
    return absl::CancelledError(
        absl::StrCat("no ", message.GetDescriptor()->full_name(),
                     " arrived: the client cancelled the call or sent none"));
  }
  return ParseRequest(request, message);
}

grpc::ServerUnaryReactor* CacheService::Refuse(RpcMethod method, grpc::ByteBuffer* reply,
                                               const absl::Status& error) {
  auto* reactor = new Reactor(*this, method, reply);
  reactor->FinishWithError(ToGrpcStatus(error));
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::Get(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* reply) {
  v1::GetRequest get;
  if (absl::Status s = Admit(RpcMethod::kGet, *context, *request, get); !s.ok()) {
    return Refuse(RpcMethod::kGet, reply, s);
  }
  auto* reactor = new GetReactor(*this, context, reply);
  reactor->Start(get.key());
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::BatchGet(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* reply) {
  v1::BatchGetRequest batch;
  if (absl::Status s = Admit(RpcMethod::kBatchGet, *context, *request, batch); !s.ok()) {
    return Refuse(RpcMethod::kBatchGet, reply, s);
  }
  auto* reactor = new BatchGetReactor(*this, context, reply);
  reactor->Start(batch);
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::Invalidate(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* reply) {
  if (options_.admin != nullptr) {
    if (absl::Status denied = options_.admin->Check(context->peer(), Authorization(*context));
        !denied.ok()) {
      permission_denied_.fetch_add(1, std::memory_order_relaxed);
      if (const std::optional<int64_t> suppressed = denied_log_.Admit()) {
        spdlog::warn(
            "refused Invalidate from {}: {}{}", context->peer(), std::string(denied.message()),
            *suppressed > 0 ? absl::StrCat(" (", *suppressed, " more refused since)") : "");
      }
      return Refuse(RpcMethod::kInvalidate, reply, denied);
    }
  }
  v1::InvalidateRequest invalidate;
  if (absl::Status s = Admit(RpcMethod::kInvalidate, *context, *request, invalidate); !s.ok()) {
    return Refuse(RpcMethod::kInvalidate, reply, s);
  }
  if (invalidate.keys_size() > options_.max_batch_keys) {
    return Refuse(RpcMethod::kInvalidate, reply,
                  absl::InvalidArgumentError(absl::StrCat("Invalidate of ", invalidate.keys_size(),
                                                          " keys; the limit (--max-batch-keys) is ",
                                                          options_.max_batch_keys)));
  }
  std::vector<std::string> keys;
  keys.reserve(invalidate.keys_size());
  for (std::string& key : *invalidate.mutable_keys()) {
    if (absl::Status s = CheckKey(key, options_.max_key_bytes); !s.ok()) {
      return Refuse(RpcMethod::kInvalidate, reply, s);
    }
    keys.push_back(std::move(key));
  }
  v1::InvalidateResponse response;
  response.set_removed(cache_.Invalidate(keys));
  auto* reactor = new Reactor(*this, RpcMethod::kInvalidate, reply);
  reactor->FinishWith(response);
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::Stats(grpc::CallbackServerContext* context,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* reply) {
  v1::StatsRequest stats_request;
  if (absl::Status s = Admit(RpcMethod::kStats, *context, *request, stats_request); !s.ok()) {
    return Refuse(RpcMethod::kStats, reply, s);
  }
  const FlightCacheStats s = cache_.stats();
  v1::StatsResponse response;
  response.set_requests(s.requests);
  response.set_hits(s.hits);
  response.set_misses(s.misses);
  response.set_coalesced(s.coalesced);
  response.set_loads_started(s.loads_started);
  response.set_loads_succeeded(s.loads_succeeded);
  response.set_loads_failed(s.loads_failed);
  response.set_loads_cancelled(s.loads_cancelled);
  response.set_origin_fetches(s.origin_fetches);
  response.set_hedges_sent(s.hedges_sent);
  response.set_hedges_won(s.hedges_won);
  response.set_loads_inflight(s.loads_inflight);
  response.set_permission_denied(permission_denied_.load(std::memory_order_relaxed));
  response.set_loads_queued(s.loads_queued);
  response.set_entries(s.entries);
  response.set_bytes(s.bytes);
  response.set_evictions(s.evictions);
  response.set_negative_hits(s.negative_hits);
  response.set_stale_served(s.stale_served);
  response.set_refreshes_started(s.refreshes_started);
  response.set_fleet_hits(s.fleet_hits);
  response.set_fleet_leases_won(s.fleet_leases_won);
  response.set_fleet_lease_waits(s.fleet_lease_waits);
  response.set_fleet_errors(s.fleet_errors);
  response.set_fleet_invalidations_received(s.fleet_invalidations_received);
  auto* reactor = new Reactor(*this, RpcMethod::kStats, reply);
  reactor->FinishWith(response);
  return reactor;
}

}  // namespace flightcache
