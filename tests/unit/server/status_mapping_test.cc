// server/status_mapping.cc and server/logging.cc.
#include "server/status_mapping.h"

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/logging.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

TEST(StatusMappingTest, EveryCodeKeepsItsNumberBothWays) {
  for (int code = 0; code <= 16; ++code) {
    const absl::StatusCode absl_code = static_cast<absl::StatusCode>(code);
    const grpc::StatusCode grpc_code = ToGrpcCode(absl_code);
    EXPECT_EQ(static_cast<int>(grpc_code), code);
    EXPECT_EQ(FromGrpcCode(grpc_code), absl_code);
  }
  EXPECT_EQ(ToGrpcCode(static_cast<absl::StatusCode>(99)), grpc::StatusCode::UNKNOWN);
}

TEST(StatusMappingTest, StatusesKeepTheirMessages) {
  const grpc::Status g = ToGrpcStatus(absl::UnavailableError("origin down"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(g.error_message(), "origin down");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const absl::Status a =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too big"));
  EXPECT_TRUE(absl::IsResourceExhausted(a));
  EXPECT_EQ(a.message(), "too big");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
}

TEST(StatusMappingTest, SourcesMapToTheProtoEnum) {
  EXPECT_EQ(ToProtoSource(Source::kHit), v1::SOURCE_HIT);
  EXPECT_EQ(ToProtoSource(Source::kLoaded), v1::SOURCE_LOADED);
  EXPECT_EQ(ToProtoSource(Source::kCoalesced), v1::SOURCE_COALESCED);
  EXPECT_EQ(ToProtoSource(Source::kUnspecified), v1::SOURCE_UNSPECIFIED);
}

TEST(LoggingTest, JsonLinesEscapeTheMessage) {
  const std::string line =
      FormatJsonLogLine(absl::FromUnixSeconds(0), "warn", "origin \"a\\b\" failed\n\ttwice\x01");
  EXPECT_EQ(line,
            "{\"ts\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"warn\",\"msg\":\"origin "
            "\\\"a\\\\b\\\" failed\\n\\ttwice\\u0001\"}");
}

TEST(LoggingTest, RateLimiterAdmitsOnePerIntervalAndCountsTheRest) {
  testing::FakeClock clock;
  LogRateLimiter limiter(absl::Seconds(1), clock);
  EXPECT_EQ(limiter.Admit(), 0);
  EXPECT_EQ(limiter.Admit(), std::nullopt);
  EXPECT_EQ(limiter.Admit(), std::nullopt);
  clock.Advance(absl::Milliseconds(999));
  EXPECT_EQ(limiter.Admit(), std::nullopt);
  clock.Advance(absl::Milliseconds(1));
  EXPECT_EQ(limiter.Admit(), 3);
  EXPECT_EQ(limiter.Admit(), std::nullopt);
}

}  // namespace
}  // namespace flightcache
