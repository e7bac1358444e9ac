#include "server/fleet/redis_fleet_codec.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;

using Kind = FleetAnnouncement::Kind;

std::string Binary1KiB() {
  std::string bytes(1024, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + 3);
  return bytes;
}

TEST(FleetEntryCodecTest, ValueRoundTrips) {
  const std::string value = Binary1KiB();
  const std::string encoded = EncodeFleetEntry({.value = value});
  EXPECT_EQ(encoded, "V" + value);
  absl::StatusOr<FleetEntry> decoded = DecodeFleetEntry(encoded, absl::Seconds(3));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(decoded->not_found);
  EXPECT_EQ(decoded->value, value);
  EXPECT_EQ(decoded->ttl_remaining, absl::Seconds(3));

  decoded = DecodeFleetEntry(EncodeFleetEntry({.value = ""}), absl::Seconds(1));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(decoded->not_found);
  EXPECT_EQ(decoded->value, "");
}

TEST(FleetEntryCodecTest, NotFoundRoundTrips) {
  const std::string encoded = EncodeFleetEntry({.not_found = true});
  EXPECT_EQ(encoded, "N");
  absl::StatusOr<FleetEntry> decoded = DecodeFleetEntry(encoded, absl::Milliseconds(5));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->not_found);
  EXPECT_EQ(decoded->value, "");
  EXPECT_EQ(decoded->ttl_remaining, absl::Milliseconds(5));
}

TEST(FleetEntryCodecTest, MalformedEntriesAreErrors) {
  for (const std::string& bad : {std::string(), std::string("X"), std::string("vabc"),
                                 std::string("Nextra"), std::string("\0", 1)}) {
    EXPECT_EQ(DecodeFleetEntry(bad, absl::Seconds(1)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << testing::PrintToString(bad);
  }
}

TEST(AnnouncementCodecTest, EveryKindRoundTripsWithAwkwardKeys) {
  const std::string keys[] = {"", "k", "{", "}", "a}b{", std::string("n\0l", 3), Binary1KiB()};
  for (const Kind kind : {Kind::kLoaded, Kind::kNotShared, Kind::kInvalidated}) {
    for (const std::string& key : keys) {
      const std::string message = EncodeAnnouncement("sender-1", {.kind = kind, .key = key});
      absl::StatusOr<DecodedAnnouncement> decoded = DecodeAnnouncement(message);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(decoded->sender, "sender-1");
      EXPECT_EQ(decoded->announcement.kind, kind);
      EXPECT_EQ(decoded->announcement.key, key);
      EXPECT_TRUE(decoded->announcement.failure.ok());
    }
  }
}

TEST(AnnouncementCodecTest, FailureKeepsCodeAndMessage) {
  const std::string text = absl::StrCat("origin said \"no\"", std::string("\0\xff", 2));
  const std::string message = EncodeAnnouncement(
      "s", {.kind = Kind::kFailed, .key = "k", .failure = absl::UnavailableError(text)});
  absl::StatusOr<DecodedAnnouncement> decoded = DecodeAnnouncement(message);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->announcement.kind, Kind::kFailed);
  EXPECT_EQ(decoded->announcement.failure.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(decoded->announcement.failure.message(), text);

  // An OK "failure" still decodes as a failure.
  decoded = DecodeAnnouncement(EncodeAnnouncement("s", {.kind = Kind::kFailed, .key = "k"}));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->announcement.failure.code(), absl::StatusCode::kUnknown);
}

TEST(AnnouncementCodecTest, LayoutIsVersionedAndLengthPrefixed) {
  const std::string message = EncodeAnnouncement("ab", {.kind = Kind::kLoaded, .key = "k"});
  EXPECT_EQ(message, std::string("\x01\0\0\0\x02"
                                 "ab"
                                 "L"
                                 "\0\0\0\x01"
                                 "k",
                                 13));
}

TEST(AnnouncementCodecTest, EveryTruncationIsMalformed) {
  const std::string message = EncodeAnnouncement(
      "sender", {.kind = Kind::kFailed, .key = "key", .failure = absl::InternalError("boom")});
  ASSERT_TRUE(DecodeAnnouncement(message).ok());
  for (size_t size = 0; size < message.size(); ++size) {
    absl::StatusOr<DecodedAnnouncement> decoded = DecodeAnnouncement(message.substr(0, size));
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << "size " << size;
    EXPECT_THAT(decoded.status().message(), HasSubstr("malformed fleet announcement"));
  }
}

TEST(AnnouncementCodecTest, MalformedMessagesAreErrors) {
  const std::string good = EncodeAnnouncement("s", {.kind = Kind::kLoaded, .key = "k"});
  std::string other_version = good;
  other_version[0] = 2;
  std::string unknown_kind = good;
  unknown_kind[6] = 'Z';
  std::string huge_length = good;
  huge_length[1] = '\xff';  // the sender's length: far beyond the message
  const std::string failed = EncodeAnnouncement(
      "s", {.kind = Kind::kFailed, .key = "k", .failure = absl::InternalError("x")});
  std::string ok_code = failed;
  std::string unknown_code = failed;
  // The code is the 4 bytes after version, sender (4 + 1), kind and key (4 + 1).
  const size_t code_at = 1 + 5 + 1 + 5;
  ok_code.replace(code_at, 4, std::string("\0\0\0\0", 4));
  unknown_code.replace(code_at, 4, std::string("\0\0\0\x11", 4));  // 17: no such code
  for (const std::string& bad : {std::string(), other_version, unknown_kind, huge_length,
                                 good + "x", ok_code, unknown_code, std::string("garbage")}) {
    EXPECT_EQ(DecodeAnnouncement(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << testing::PrintToString(bad);
  }
}

}  // namespace
}  // namespace flightcache
