#include "server/fleet/redis_options.h"

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;

TEST(ParseRedisUrlTest, HostPortAndDatabase) {
  absl::StatusOr<RedisEndpoint> e = ParseRedisUrl("redis://10.0.0.7:6380/3");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "10.0.0.7");
  EXPECT_EQ(e->port, 6380);
  EXPECT_EQ(e->db, 3);
  EXPECT_EQ(e->ToString(), "10.0.0.7:6380/3");
}

TEST(ParseRedisUrlTest, PortAndDatabaseDefault) {
  absl::StatusOr<RedisEndpoint> e = ParseRedisUrl("redis://redis.default.svc");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "redis.default.svc");
  EXPECT_EQ(e->port, 6379);
  EXPECT_EQ(e->db, 0);
  e = ParseRedisUrl("redis://redis:7000/");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->port, 7000);
  EXPECT_EQ(e->db, 0);
}

TEST(ParseRedisUrlTest, BracketedIpv6) {
  absl::StatusOr<RedisEndpoint> e = ParseRedisUrl("redis://[::1]:6390/1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "::1");  // as hiredis wants it
  EXPECT_EQ(e->port, 6390);
  EXPECT_EQ(e->db, 1);
  EXPECT_EQ(e->ToString(), "[::1]:6390/1");
  e = ParseRedisUrl("redis://[fd00::2]");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "fd00::2");
  EXPECT_EQ(e->port, 6379);
}

struct BadUrl {
  std::string url;
  std::string error;  // a part of the message
};

class ParseRedisUrlRefusesTest : public ::testing::TestWithParam<BadUrl> {};

TEST_P(ParseRedisUrlRefusesTest, WithAClearError) {
  absl::StatusOr<RedisEndpoint> e = ParseRedisUrl(GetParam().url);
  ASSERT_FALSE(e.ok()) << GetParam().url << " parsed as " << e->ToString();
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr(GetParam().error));
}

INSTANTIATE_TEST_SUITE_P(
    Urls, ParseRedisUrlRefusesTest,
    ::testing::Values(
        BadUrl{"", "not a redis:// URL"}, BadUrl{"10.0.0.7:6379", "not a redis:// URL"},
        BadUrl{"http://redis:6379", "not a redis:// URL"},
        BadUrl{"rediss://redis:6379", "not supported yet"},
        BadUrl{"redis+cluster://a:1,b:2", "not supported yet"}, BadUrl{"redis://", "has no host"},
        BadUrl{"redis://:6379", "has no host"}, BadUrl{"redis:///2", "has no host"},
        BadUrl{"redis://redis:", "port ''"},
        BadUrl{"redis://redis:0", "port '0' is not a port in [1, 65535]"},
        BadUrl{"redis://redis:65536", "not a port"}, BadUrl{"redis://redis:+80", "not a port"},
        BadUrl{"redis://redis:http", "not a port"},
        BadUrl{"redis://redis:6379/x", "database 'x' is not a number"},
        BadUrl{"redis://redis:6379/-1", "database '-1'"},
        BadUrl{"redis://redis:6379/1/2", "database '1/2'"},
        BadUrl{"redis://redis:6379/99999999999", "database '99999999999'"},
        BadUrl{"redis://redis:6379?db=1", "no query"}, BadUrl{"redis://redis#x", "no query"},
        BadUrl{"redis://:secret@redis:6379", "--fleet-password-file"},
        BadUrl{"redis://user:secret@redis:6379", "--fleet-password-file"},
        BadUrl{"redis://::1:6379", "write IPv6 addresses as [ADDR]"},
        BadUrl{"redis://[::1:6379", "unterminated"}, BadUrl{"redis://[]:6379", "empty"},
        BadUrl{"redis://[::1]6379", "between ']' and the port"},
        BadUrl{"redis://[::1]:", "port ''"}, BadUrl{"redis://re dis:1", "not a host name"},
        BadUrl{"redis://redis:6379\nfake log line", "contains a control character"}),
    [](const ::testing::TestParamInfo<BadUrl>& info) { return absl::StrCat("Url", info.index); });

TEST(ParseRedisUrlTest, ErrorsQuoteTheUrlEscaped) {
  absl::StatusOr<RedisEndpoint> e = ParseRedisUrl("redis://a\nb:1");
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("'redis://a\\nb:1'"));
  EXPECT_THAT(std::string(e.status().message()), ::testing::Not(HasSubstr("\n")));
  e = ParseRedisUrl("redis://redis:99999");
  EXPECT_THAT(e.status().message(), HasSubstr("'redis://redis:99999'"));
  EXPECT_THAT(e.status().message(), HasSubstr("want redis://HOST:PORT[/DB]"));
}

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = absl::StrCat(::testing::TempDir(), "redis_options_test_", name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(ReadRedisPasswordFileTest, DropsOneTrailingNewline) {
  EXPECT_EQ(*ReadRedisPasswordFile(WriteFile("plain", "s3cret")), "s3cret");
  EXPECT_EQ(*ReadRedisPasswordFile(WriteFile("lf", "s3cret\n")), "s3cret");
  EXPECT_EQ(*ReadRedisPasswordFile(WriteFile("crlf", "s3cret\r\n")), "s3cret");
  EXPECT_EQ(*ReadRedisPasswordFile(WriteFile("spaces", " s3 cret ")), " s3 cret ");
}

TEST(ReadRedisPasswordFileTest, RefusesMissingEmptyAndMultiLineFilesWithoutShowingThem) {
  absl::StatusOr<std::string> p = ReadRedisPasswordFile("/nonexistent/redis-password");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("/nonexistent/redis-password"));
  EXPECT_THAT(ReadRedisPasswordFile(WriteFile("empty", "")).status().message(),
              HasSubstr("is empty"));
  EXPECT_THAT(ReadRedisPasswordFile(WriteFile("newline", "\n")).status().message(),
              HasSubstr("is empty"));
  p = ReadRedisPasswordFile(WriteFile("two", "first\nsecond\n"));
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("control character"));
  EXPECT_THAT(p.status().message(), ::testing::Not(HasSubstr("first")));
  // A secret is a line, not a file of any size (a wrong path could name a huge file).
  p = ReadRedisPasswordFile(WriteFile("huge", std::string((64 << 10) + 1, 'x')));
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("larger than 65536 bytes"));
  EXPECT_TRUE(ReadRedisPasswordFile(WriteFile("largest", std::string(64 << 10, 'x'))).ok());
}

TEST(RedisOptionsTest, ValidateRefusesNonsense) {
  RedisOptions options{.endpoint = {.host = "redis", .port = 6379}};
  EXPECT_TRUE(options.Validate().ok()) << options.Validate();
  RedisOptions bad = options;
  bad.command_timeout = absl::ZeroDuration();
  EXPECT_THAT(bad.Validate().message(), HasSubstr("command timeout must be positive"));
  bad = options;
  bad.max_backoff = absl::Milliseconds(1);
  EXPECT_THAT(bad.Validate().message(), HasSubstr("maximum backoff is below"));
  bad = options;
  bad.endpoint.host.clear();
  EXPECT_FALSE(bad.Validate().ok());
  bad = options;
  bad.max_in_flight = 0;
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace flightcache
