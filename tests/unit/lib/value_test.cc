#include "flightcache/value.h"

#include <string>
#include <thread>
#include <vector>

#include "flightcache/flight_cache.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

TEST(ValueTest, NullMeansNoValue) {
  const Value none;
  EXPECT_TRUE(none == nullptr);
  EXPECT_FALSE(static_cast<bool>(none));
  const Value also_none = nullptr;
  EXPECT_TRUE(also_none == nullptr);
}

TEST(ValueTest, HoldsACopyOfTheBytes) {
  std::string source = "hello\0world";
  source.push_back('\0');  // embedded and trailing NULs are bytes like any other
  const Value value = MakeValue(source);
  source[0] = 'J';  // the Value owns its own copy
  ASSERT_TRUE(value != nullptr);
  EXPECT_EQ(value.size(), source.size());
  EXPECT_EQ(*value, std::string_view("hello\0world\0", 12).substr(0, source.size()));
  EXPECT_EQ(value.view()[0], 'h');
}

TEST(ValueTest, EmptyBytesAreAValueNotNull) {
  const Value empty = MakeValue("");
  EXPECT_TRUE(empty != nullptr);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.view().empty());
}

TEST(ValueTest, CopiesShareOneBlock) {
  const Value a = MakeValue(std::string(1000, 'x'));
  const Value b = a;  // NOLINT(performance-unnecessary-copy-initialization): the point
  EXPECT_TRUE(a.SharesBytesWith(b));
  EXPECT_EQ(a.data(), b.data());
  EXPECT_FALSE(a.SharesBytesWith(MakeValue(std::string(1000, 'x'))));
}

TEST(ValueTest, CopiesMayBeDroppedInManyThreads) {
  const Value shared = MakeValue("shared");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([shared] {
      for (int i = 0; i < 10000; ++i) {
        Value copy = shared;
        ASSERT_EQ(*copy, "shared");
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(*shared, "shared");
}

TEST(ValueTest, FlightCacheRejectsALimitBeyondWhatAValueHolds) {
  FlightCacheOptions options;
  options.max_value_bytes = static_cast<int64_t>(Value::kMaxBytes);
  EXPECT_TRUE(options.Validate().ok());
  options.max_value_bytes = static_cast<int64_t>(Value::kMaxBytes) + 1;
  EXPECT_EQ(options.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flightcache
