#include "client/loadgen/grpc_target.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flightcache::loadgen {
namespace {

namespace pb = ::flightcache::v1;

Source FromProto(pb::Source source) {
  switch (source) {
    case pb::SOURCE_HIT:
      return Source::kHit;
    case pb::SOURCE_LOADED:
      return Source::kLoaded;
    case pb::SOURCE_COALESCED:
      return Source::kCoalesced;
    case pb::SOURCE_STALE:
      return Source::kStale;
    case pb::SOURCE_FLEET:
      return Source::kFleet;
    default:
      return Source::kUnspecified;
  }
}

// grpc::StatusCode and absl::StatusCode share their numbering (0..16).
absl::StatusCode FromGrpc(grpc::StatusCode code) { return static_cast<absl::StatusCode>(code); }

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

struct GetCall {
  grpc::ClientContext context;
  pb::GetRequest request;
  pb::GetResponse response;
  CallDone done;
};

struct BatchGetCall {
  grpc::ClientContext context;
  pb::BatchGetRequest request;
  pb::BatchGetResponse response;
  CallDone done;
};

struct InvalidateCall {
  grpc::ClientContext context;
  pb::InvalidateRequest request;
  pb::InvalidateResponse response;
  CallDone done;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcTarget>> GrpcTarget::Connect(const GrpcTargetOptions& options) {
  std::vector<std::unique_ptr<pb::Cache::Stub>> stubs;
  for (int i = 0; i < std::max(1, options.channels); ++i) {
    grpc::ChannelArguments args;
    // A private subchannel pool gives every channel its own connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(-1);
    options.security.Apply(args);
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
        options.target,
        options.security.credentials != nullptr ? options.security.credentials
                                                : grpc::InsecureChannelCredentials(),
        args);
    if (!channel->WaitForConnected(DeadlineAfter(options.connect_timeout))) {
      return absl::UnavailableError(absl::StrCat("cannot connect to ", options.target, " within ",
                                                 absl::FormatDuration(options.connect_timeout)));
    }
    stubs.push_back(pb::Cache::NewStub(channel));
  }
  return std::unique_ptr<GrpcTarget>(new GrpcTarget(std::move(stubs)));
}

pb::Cache::Stub& GrpcTarget::NextStub() {
  return *stubs_[next_stub_.fetch_add(1, std::memory_order_relaxed) % stubs_.size()];
}

void GrpcTarget::Start(CallSpec call, CallDone done) {
  if (call.kind == CallKind::kInvalidate) {
    auto* invalidate = new InvalidateCall;
    invalidate->context.set_deadline(DeadlineAfter(call.deadline));
    for (std::string& key : call.keys) invalidate->request.add_keys(std::move(key));
    invalidate->done = std::move(done);
    NextStub().async()->Invalidate(
        &invalidate->context, &invalidate->request, &invalidate->response,
        [invalidate](const grpc::Status& status) {
          std::unique_ptr<InvalidateCall> owned(invalidate);
          std::vector<ItemResult> results(
              owned->request.keys_size(),
              ItemResult{FromGrpc(status.error_code()), Source::kUnspecified});
          CallDone callback = std::move(owned->done);
          owned.reset();
          callback(std::move(results));
        });
    return;
  }
  if (call.kind == CallKind::kGet) {
    auto* get = new GetCall;
    get->context.set_deadline(DeadlineAfter(call.deadline));
    get->request.set_key(std::move(call.keys.front()));
    get->done = std::move(done);
    NextStub().async()->Get(
        &get->context, &get->request, &get->response, [get](const grpc::Status& status) {
          std::unique_ptr<GetCall> owned(get);
          ItemResult result{FromGrpc(status.error_code()), FromProto(owned->response.source())};
          CallDone callback = std::move(owned->done);
          owned.reset();  // free the call before the runner sends the next
          callback({result});
        });
    return;
  }
  auto* batch = new BatchGetCall;
  batch->context.set_deadline(DeadlineAfter(call.deadline));
  for (std::string& key : call.keys) batch->request.add_keys(std::move(key));
  batch->done = std::move(done);
  NextStub().async()->BatchGet(
      &batch->context, &batch->request, &batch->response, [batch](const grpc::Status& status) {
        std::unique_ptr<BatchGetCall> owned(batch);
        const int keys = owned->request.keys_size();
        std::vector<ItemResult> results;
        results.reserve(keys);
        if (!status.ok()) {
          results.assign(keys, ItemResult{FromGrpc(status.error_code()), Source::kUnspecified});
        } else if (owned->response.results_size() != keys) {
          // The spec promises one result per key, in order; anything else is a server bug.
          results.assign(keys, ItemResult{absl::StatusCode::kInternal, Source::kUnspecified});
        } else {
          for (const pb::KeyResult& r : owned->response.results()) {
            results.push_back({static_cast<absl::StatusCode>(r.code()), FromProto(r.source())});
          }
        }
        CallDone callback = std::move(owned->done);
        owned.reset();
        callback(std::move(results));
      });
}

absl::StatusOr<ServerStats> GrpcTarget::FetchStats(absl::Duration deadline) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(deadline));
  pb::StatsRequest request;
  pb::StatsResponse r;
  grpc::Status status = stubs_.front()->Stats(&context, request, &r);
  if (!status.ok()) {
    return absl::Status(FromGrpc(status.error_code()),
                        absl::StrCat("Stats: ", status.error_message()));
  }
  ServerStats s;
  s.requests = r.requests();
  s.hits = r.hits();
  s.misses = r.misses();
  s.coalesced = r.coalesced();
  s.loads_started = r.loads_started();
  s.loads_succeeded = r.loads_succeeded();
  s.loads_failed = r.loads_failed();
  s.loads_cancelled = r.loads_cancelled();
  s.origin_fetches = r.origin_fetches();
  s.hedges_sent = r.hedges_sent();
  s.hedges_won = r.hedges_won();
  s.loads_inflight = r.loads_inflight();
  s.loads_queued = r.loads_queued();
  s.entries = r.entries();
  s.bytes = r.bytes();
  s.evictions = r.evictions();
  s.negative_hits = r.negative_hits();
  s.stale_served = r.stale_served();
  s.refreshes_started = r.refreshes_started();
  return s;
}

}  // namespace flightcache::loadgen
