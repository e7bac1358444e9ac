// What the sidecar does with an origin reply that is not a FetchResponse (issue 9, item 1).
//
// The origin here is a real loopback gRPC server whose Fetch is a raw (ByteBuffer) callback
// method: it answers OK with whatever bytes the test gives it, which no generated origin can do.
// Before the sidecar parsed origin replies itself, gRPC's typed callback stub reported such a
// reply as OK with a half-parsed, empty FetchResponse: every waiter got OK with an empty value,
// and the empty value was cached for the TTL.
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "flightcache/v1/origin.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/grpc_listener.h"
#include "tests/integration/server_test_util.h"

namespace flightcache::testing {
namespace {

using ::testing::HasSubstr;

// An Origin that answers every Fetch OK with `reply`'s bytes, verbatim. With `hold`, replies wait
// for Release() (so that several callers can join one load first).
class RawOrigin final {
 public:
  RawOrigin() {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    absl::StatusOr<GrpcServer> server = StartGrpcServer(builder, "127.0.0.1:0");
    if (!server.ok()) {
      std::fprintf(stderr, "RawOrigin: %s\n", std::string(server.status().message()).c_str());
      std::abort();
    }
    server_ = std::move(server->server);
    port_ = server->port;
  }
  ~RawOrigin() {
    service_.Release();  // a unary reactor must be finished before the server can stop
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
  }
  RawOrigin(const RawOrigin&) = delete;
  RawOrigin& operator=(const RawOrigin&) = delete;

  std::string url() const { return absl::StrCat("grpc://127.0.0.1:", port_); }
  void SetReply(std::string bytes, bool hold) { service_.SetReply(std::move(bytes), hold); }
  int Release() { return service_.Release(); }
  int64_t fetches() const { return service_.fetches(); }
  bool WaitForHeld(int n) const { return service_.WaitForHeld(n); }

 private:
  class Service final : public v1::Origin::WithRawCallbackMethod_Fetch<v1::Origin::Service> {
   public:
    grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* /*request*/,
                                    grpc::ByteBuffer* response) override {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      absl::MutexLock lock(&mu_);
      ++fetches_;
      if (hold_) {
        held_.push_back({reactor, response});
      } else {
        Answer(reactor, response);
      }
      return reactor;
    }

    void SetReply(std::string bytes, bool hold) {
      absl::MutexLock lock(&mu_);
      reply_ = std::move(bytes);
      hold_ = hold;
    }

    int Release() {
      absl::MutexLock lock(&mu_);
      for (auto& [reactor, response] : held_) Answer(reactor, response);
      const int n = static_cast<int>(held_.size());
      held_.clear();
      return n;
    }

    int64_t fetches() const {
      absl::MutexLock lock(&mu_);
      return fetches_;
    }

    bool WaitForHeld(int n) const {
      absl::MutexLock lock(&mu_);
      auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return static_cast<int>(held_.size()) >= n;
      };
      return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    }

   private:
    void Answer(grpc::ServerUnaryReactor* reactor, grpc::ByteBuffer* response)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      grpc::Slice slice(reply_);
      *response = grpc::ByteBuffer(&slice, 1);
      reactor->Finish(grpc::Status::OK);
    }

    mutable absl::Mutex mu_;
    std::string reply_ ABSL_GUARDED_BY(mu_);
    bool hold_ ABSL_GUARDED_BY(mu_) = false;
    std::vector<std::pair<grpc::ServerUnaryReactor*, grpc::ByteBuffer*>> held_ ABSL_GUARDED_BY(mu_);
    int64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
  };

  Service service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

class OriginReplyTest : public SidecarTest {
 protected:
  void StartAgainstRawOrigin() {
    ServerConfig config = BaseConfig();
    config.origin = raw_.url();
    StartServer(config);
  }

  // The value of flightcache_origin_garbage_replies_total, or -1 if it is not exposed.
  int64_t GarbageReplies() const {
    const std::string text = sidecar_->metrics().ExpositionText();
    const std::string name = "\nflightcache_origin_garbage_replies_total ";
    const size_t at = text.find(name);
    if (at == std::string::npos) return -1;
    return std::atoll(text.c_str() + at + name.size());
  }

  RawOrigin raw_;
};

std::string Bytes(std::initializer_list<unsigned char> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

// Field 1 (value) claims a length far past the end of the reply: protobuf rejects it. Three
// callers share the load; each gets INTERNAL naming the problem, the next Get fetches again.
TEST_F(OriginReplyTest, ATruncatedReplyIsInternalForEveryWaiterAndNotCached) {
  raw_.SetReply(Bytes({0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), /*hold=*/true);
  StartAgainstRawOrigin();
  EXPECT_EQ(GarbageReplies(), 0);
  std::vector<std::unique_ptr<PendingGet>> calls;
  calls.push_back(StartGet("k"));
  ASSERT_TRUE(raw_.WaitForHeld(1));
  calls.push_back(StartGet("k"));
  calls.push_back(StartGet("k"));
  ASSERT_TRUE(WaitForStats([](const FlightCacheStats& s) { return s.coalesced == 2; }));
  EXPECT_EQ(raw_.Release(), 1);
  for (auto& call : calls) {
    ASSERT_TRUE(call->Wait());
    EXPECT_EQ(call->status.error_code(), grpc::StatusCode::INTERNAL)
        << call->status.error_message();
    EXPECT_THAT(call->status.error_message(), HasSubstr("does not parse as a"));
    EXPECT_THAT(call->status.error_message(), HasSubstr(raw_.url()));
  }
  EXPECT_EQ(raw_.fetches(), 1);
  EXPECT_EQ(GarbageReplies(), 1);

  raw_.SetReply(Bytes({0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), /*hold=*/false);
  v1::GetResponse response;
  const grpc::Status again = Get("k", &response);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::INTERNAL) << "a HIT means garbage was cached";
  EXPECT_NE(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(raw_.fetches(), 2);
  EXPECT_EQ(GarbageReplies(), 2);
  EXPECT_EQ(sidecar_->stats().entries, 0);
}

// Other byte strings protobuf refuses, each answered INTERNAL and counted.
TEST_F(OriginReplyTest, EveryUnparsableReplyIsInternalAndCounted) {
  const std::vector<std::pair<std::string, std::string>> replies = {
      {"field 1 longer than the reply", Bytes({0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})},
      {"field 1 cut short", Bytes({0x0a, 0x05, 'a', 'b'})},
      {"field number 0", Bytes({0x02, 0x00})},
      {"wire type 7", Bytes({0x0f})},
      {"a varint that never ends",
       Bytes({0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})},
  };
  StartAgainstRawOrigin();
  int64_t n = 0;
  for (const auto& [what, bytes] : replies) {
    raw_.SetReply(bytes, /*hold=*/false);
    v1::GetResponse response;
    const grpc::Status status = Get(absl::StrCat("key-", n), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << what;
    EXPECT_THAT(status.error_message(), HasSubstr("returned garbage")) << what;
    EXPECT_EQ(GarbageReplies(), ++n) << what;
  }
  EXPECT_EQ(sidecar_->stats().entries, 0);
}

// The control: a well-formed reply written by hand (value "v", ttl_ms 5000) is a value, cached,
// and not counted; so the raw origin itself is not what the tests above see failing.
TEST_F(OriginReplyTest, AWellFormedRawReplyIsAValue) {
  raw_.SetReply(Bytes({0x0a, 0x01, 'v', 0x10, 0x88, 0x27}), /*hold=*/false);
  StartAgainstRawOrigin();
  v1::GetResponse response;
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.value(), "v");
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_LE(response.ttl_remaining_ms(), 5000);
  EXPECT_GT(response.ttl_remaining_ms(), 4000);
  ASSERT_TRUE(Get("k", &response).ok());
  EXPECT_EQ(response.source(), v1::SOURCE_HIT);
  EXPECT_EQ(GarbageReplies(), 0);
}

}  // namespace
}  // namespace flightcache::testing
