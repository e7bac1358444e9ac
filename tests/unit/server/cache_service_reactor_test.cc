// What CacheService's reactors tell gRPC about where their reactions may run.
//
// gRPC runs a reactor's OnDone and OnCancel on its executor (a thread hop per call) unless the
// reactor says its reactions are inlineable (ServerReactor::InternalInlineable). A hit paid that
// hop on every call: a context switch, more CPU than the cache lookup itself, and the warm herd's
// p99 above the no-op server's (bench/e2e/waiters.sh). A reactor says so once it has answered,
// and not before: a waiting call's OnCancel leaves its flights, which must not run on gRPC's
// completion thread.
//
// The handlers are called directly, without a server: a reactor that finishes before gRPC binds
// it keeps the finish for later, so the test can look at it and then release it (OnDone).
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "flightcache/flight_cache.h"
#include "flightcache/timer_queue.h"
#include "flightcache/v1/cache.pb.h"
#include "gtest/gtest.h"
#include "server/cache_service.h"
#include "tests/testing/fake_origin.h"

namespace flightcache::testing {
namespace {

grpc::ByteBuffer GetRequestBytes(const std::string& key) {
  v1::GetRequest request;
  request.set_key(key);
  grpc::ByteBuffer bytes;
  bool own = false;
  EXPECT_TRUE(grpc::SerializationTraits<v1::GetRequest>::Serialize(request, &bytes, &own).ok());
  return bytes;
}

class CacheServiceReactorTest : public ::testing::Test {
 protected:
  // Calls the Get handler as gRPC would; the reactor is released by Release().
  grpc::ServerUnaryReactor* Get(const std::string& key) {
    request_ = GetRequestBytes(key);
    return service_.Get(&context_, &request_, &reply_);
  }

  // What gRPC does once the call is over: the reactor frees itself.
  void Release(grpc::ServerUnaryReactor* reactor) {
    reactor->OnDone();
    EXPECT_EQ(service_.calls_in_flight(), 0);
  }

  FakeOrigin origin_;
  ThreadTimerQueue timers_;
  FlightCache cache_{FlightCacheOptions{.load_timeout = absl::Hours(1)}, origin_, timers_};
  CacheService service_{cache_, CacheServiceOptions{}, nullptr};
  grpc::CallbackServerContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer reply_;
};

TEST_F(CacheServiceReactorTest, AHitsReactionsRunInlineNotOnGrpcsExecutor) {
  origin_.set_auto_answer([](const FetchRequest&) { return FetchResult{"v", absl::Hours(1)}; });
  Release(Get("k"));  // a miss answered inline: the value is cached now

  grpc::ServerUnaryReactor* hit = Get("k");
  EXPECT_TRUE(hit->InternalInlineable()) << "a hit would hop to gRPC's executor to end";
  Release(hit);
}

TEST_F(CacheServiceReactorTest, ARefusedCallsReactionsRunInline) {
  grpc::ServerUnaryReactor* refused = Get("");  // INVALID_ARGUMENT: empty key
  EXPECT_TRUE(refused->InternalInlineable());
  Release(refused);
}

TEST_F(CacheServiceReactorTest, AWaitingCallsReactionsAreInlineOnlyOnceItIsAnswered) {
  grpc::ServerUnaryReactor* waiting = Get("slow");
  ASSERT_TRUE(origin_.WaitForFetches(1, absl::Seconds(10))) << "the miss started no fetch";
  EXPECT_FALSE(waiting->InternalInlineable())
      << "a waiting call's OnCancel (leaving its flight) would run on gRPC's completion thread";

  ASSERT_TRUE(origin_.AnswerValue(0, "v"));  // the load completes: the call is answered inline
  EXPECT_TRUE(waiting->InternalInlineable());
  Release(waiting);
}

}  // namespace
}  // namespace flightcache::testing
