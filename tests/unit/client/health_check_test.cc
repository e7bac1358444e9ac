#include "client/cli/health_check.h"

#include <string>

#include "gtest/gtest.h"

namespace flightcache::cli {
namespace {

TEST(HealthCheckTest, EncodesTheServiceName) {
  EXPECT_EQ(EncodeHealthCheckRequest(""), "");
  EXPECT_EQ(EncodeHealthCheckRequest("flightcache.v1.Cache"),
            std::string("\x0a\x14") + "flightcache.v1.Cache");
}

TEST(HealthCheckTest, DecodesEveryServingStatus) {
  EXPECT_EQ(*DecodeHealthCheckResponse(""), ServingStatus::kUnknown);
  EXPECT_EQ(*DecodeHealthCheckResponse("\x08\x01"), ServingStatus::kServing);
  EXPECT_EQ(*DecodeHealthCheckResponse("\x08\x02"), ServingStatus::kNotServing);
  EXPECT_EQ(*DecodeHealthCheckResponse("\x08\x03"), ServingStatus::kServiceUnknown);
  // Unknown fields are skipped.
  EXPECT_EQ(*DecodeHealthCheckResponse(std::string("\x12\x02hi\x08\x01", 6)),
            ServingStatus::kServing);
}

TEST(HealthCheckTest, RejectsTruncatedResponses) {
  EXPECT_FALSE(DecodeHealthCheckResponse("\x08").ok());
  EXPECT_FALSE(DecodeHealthCheckResponse("\x12\x05hi").ok());
}

}  // namespace
}  // namespace flightcache::cli
