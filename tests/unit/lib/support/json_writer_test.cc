#include "flightcache/support/json_writer.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace flightcache::support {
namespace {

TEST(JsonWriterTest, BuildsAnObjectInCallOrder) {
  JsonObjectWriter inner;
  inner.Add("x", 1);
  JsonObjectWriter json;
  json.Add("n", int64_t{-3})
      .Add("u", uint64_t{18446744073709551615u})
      .Add("d", 0.25)
      .Add("b", true)
      .Add("s", "hi")
      .AddRaw("o", inner.Build());
  EXPECT_EQ(json.Build(),
            R"({"n":-3,"u":18446744073709551615,"d":0.25,"b":true,"s":"hi","o":{"x":1}})");
  EXPECT_EQ(JsonObjectWriter().Build(), "{}");
}

TEST(JsonWriterTest, EscapesStringsAndWritesNonFiniteAsNull) {
  EXPECT_EQ(JsonQuote("a\"b\\c\nd\te\x01"), R"("a\"b\\c\nd\te\u0001")");
  JsonObjectWriter json;
  json.Add("nan", std::nan("")).Add("inf", std::numeric_limits<double>::infinity());
  EXPECT_EQ(json.Build(), R"({"nan":null,"inf":null})");
}

}  // namespace
}  // namespace flightcache::support
