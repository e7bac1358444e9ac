#include "server/fleet/redis_fleet_keys.h"

#include <string>

#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// What Redis Cluster hashes: the text between the first '{' and the next '}' after it, if that
// is not empty; otherwise the whole name.
std::string ClusterHashedPart(absl::string_view name) {
  const size_t open = name.find('{');
  if (open == absl::string_view::npos) return std::string(name);
  const size_t close = name.find('}', open + 1);
  if (close == absl::string_view::npos || close == open + 1) return std::string(name);
  return std::string(name.substr(open + 1, close - open - 1));
}

TEST(StableKeyHashTest, IsFnv1a64) {
  // The published FNV-1a 64 test vectors: every sidecar, on any machine, agrees.
  EXPECT_EQ(StableKeyHash(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(StableKeyHash("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(StableKeyHash("foobar"), 0x85944171f73967e8ULL);
  EXPECT_EQ(FleetHashTag("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(FleetHashTag(""), "cbf29ce484222325");
}

TEST(MakeRedisFleetKeysTest, LayoutOfEntryAndLease) {
  const RedisFleetKeys keys = MakeRedisFleetKeys("fc:", "a");
  EXPECT_EQ(keys.entry, "fc:{af63dc4c8601ec8c}v:a");
  EXPECT_EQ(keys.lease, "fc:{af63dc4c8601ec8c}l:a");
  EXPECT_EQ(FleetAnnounceChannel("fc:"), "fc:announce");
}

TEST(MakeRedisFleetKeysTest, EntryAndLeaseShareTheTagWhateverTheKeyHolds) {
  const std::string awkward[] = {
      "",
      "plain",
      "}",
      "{",
      "{}",
      "}{",
      "user:{42}",
      "a}b{c}d",
      std::string("nul\0inside", 10),
      std::string("\0}", 2),
      std::string(1024, '}'),
  };
  for (const std::string& key : awkward) {
    SCOPED_TRACE(testing::PrintToString(key));
    const RedisFleetKeys keys = MakeRedisFleetKeys("fc:", key);
    const std::string tag = ClusterHashedPart(keys.entry);
    EXPECT_THAT(tag, MatchesRegex("[0-9a-f]{16}"));
    EXPECT_EQ(tag, FleetHashTag(key));
    EXPECT_EQ(ClusterHashedPart(keys.lease), tag);
    // The raw key follows verbatim, so names of different keys never collide.
    EXPECT_EQ(keys.entry, "fc:{" + tag + "}v:" + key);
    EXPECT_EQ(keys.lease, "fc:{" + tag + "}l:" + key);
  }
}

TEST(MakeRedisFleetKeysTest, DifferentKeysDifferentNames) {
  EXPECT_NE(MakeRedisFleetKeys("fc:", "a").entry, MakeRedisFleetKeys("fc:", "b").entry);
  EXPECT_NE(MakeRedisFleetKeys("fc:", "a").entry, MakeRedisFleetKeys("fc:", "a").lease);
  EXPECT_NE(MakeRedisFleetKeys("fc:", std::string("a\0", 2)).entry,
            MakeRedisFleetKeys("fc:", "a").entry);
  EXPECT_EQ(MakeRedisFleetKeys("", "a").entry, "{af63dc4c8601ec8c}v:a");
}

TEST(ValidateFleetKeyPrefixTest, RefusesBracesAndControlCharacters) {
  EXPECT_TRUE(ValidateFleetKeyPrefix("fc:").ok());
  EXPECT_TRUE(ValidateFleetKeyPrefix("").ok());
  EXPECT_TRUE(ValidateFleetKeyPrefix("team-a/cache:").ok());
  for (const std::string& bad :
       {std::string("f{c:"), std::string("fc}:"), std::string("f\0c", 3), std::string("fc\n")}) {
    absl::Status status = ValidateFleetKeyPrefix(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << testing::PrintToString(bad);
    EXPECT_THAT(status.message(), HasSubstr("fleet key prefix"));
  }
}

}  // namespace
}  // namespace flightcache
