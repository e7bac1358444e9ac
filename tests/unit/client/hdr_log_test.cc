#include "client/loadgen/hdr_log.h"

#include <zlib.h>

#include <bit>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

// HdrHistogram's countsArrayIndex for lowestDiscernibleValue = 1 and two significant digits,
// written from its definition: subBucketCount = 2^ceil(log2(2 * 10^2)) = 256, half 128,
// unitMagnitude 0; bucketIndex = floor(log2(value | 255)) - 7; subBucketIndex = value >>
// bucketIndex; index = ((bucketIndex + 1) << 7) + subBucketIndex - 128.
size_t HdrCountsIndex(uint64_t value) {
  const int bucket_index = (63 - std::countl_zero(value | 255)) - 7;
  const uint64_t sub_bucket_index = value >> bucket_index;
  return (static_cast<size_t>(bucket_index + 1) << 7) + sub_bucket_index - 128;
}

TEST(HdrLogTest, HistogramLayoutIsHdrHistogramsForOneUnitAndTwoDigits) {
  for (uint64_t v = 0; v < 200000; ++v) {
    ASSERT_EQ(Histogram::BucketIndex(v), HdrCountsIndex(v)) << v;
  }
  for (int bit = 8; bit < 63; ++bit) {
    for (const uint64_t v : {(uint64_t{1} << bit) - 1, uint64_t{1} << bit, (uint64_t{1} << bit) + 1,
                             (uint64_t{3} << (bit - 1)) + 7}) {
      ASSERT_EQ(Histogram::BucketIndex(v), HdrCountsIndex(v)) << v;
    }
  }
  std::mt19937_64 random(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = random() >> (random() % 63 + 1);
    ASSERT_EQ(Histogram::BucketIndex(v), HdrCountsIndex(v)) << v;
  }
}

uint32_t BigEndian32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

uint64_t BigEndian64(const std::string& s, size_t at) {
  return (uint64_t{BigEndian32(s, at)} << 32) | BigEndian32(s, at + 4);
}

// The counts of a V2 payload: ZigZag LEB128-64b9B varints, negative ones runs of zeros.
std::vector<uint64_t> DecodeCounts(const std::string& payload) {
  std::vector<uint64_t> counts;
  size_t at = 0;
  while (at < payload.size()) {
    uint64_t raw = 0;
    int shift = 0;
    for (int byte = 0; byte < 9; ++byte) {
      const auto b = static_cast<uint8_t>(payload.at(at++));
      if (byte == 8) {
        raw |= uint64_t{b} << shift;
        break;
      }
      raw |= uint64_t{b & 0x7fu} << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    const int64_t value = static_cast<int64_t>(raw >> 1) ^ -static_cast<int64_t>(raw & 1);
    if (value < 0) {
      counts.insert(counts.end(), static_cast<size_t>(-value), 0);
    } else {
      counts.push_back(static_cast<uint64_t>(value));
    }
  }
  return counts;
}

Histogram Sample() {
  Histogram h;
  h.Record(0);
  h.Record(3, 2);
  h.Record(255);
  h.Record(256);
  h.Record(1'500'000, 1000);  // 1.5 ms
  h.Record(25'000'000);       // 25 ms
  return h;
}

TEST(HdrLogTest, V2EncodingHasTheHeaderAndEveryCount) {
  const Histogram h = Sample();
  const std::string encoded = EncodeHdrHistogramV2(h);
  ASSERT_GE(encoded.size(), 40u);
  EXPECT_EQ(BigEndian32(encoded, 0), 0x1c849313u);  // V2 cookie, word size 1
  EXPECT_EQ(BigEndian32(encoded, 4), encoded.size() - 40);
  EXPECT_EQ(BigEndian32(encoded, 8), 0u);   // normalizingIndexOffset
  EXPECT_EQ(BigEndian32(encoded, 12), 2u);  // significant digits
  EXPECT_EQ(BigEndian64(encoded, 16), 1u);  // lowestDiscernibleValue
  EXPECT_GE(BigEndian64(encoded, 24), 3'600'000'000'000u);
  EXPECT_EQ(BigEndian64(encoded, 32), std::bit_cast<uint64_t>(1.0));

  const std::vector<uint64_t> counts = DecodeCounts(encoded.substr(40));
  ASSERT_EQ(counts.size(), Histogram::BucketIndex(h.max()) + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    EXPECT_EQ(counts[i], h.CountAtIndex(i)) << i;
    total += counts[i];
  }
  EXPECT_EQ(total, h.count());
}

TEST(HdrLogTest, EmptyHistogramEncodesOneZeroCount) {
  const std::string encoded = EncodeHdrHistogramV2(Histogram());
  EXPECT_THAT(DecodeCounts(encoded.substr(40)), ElementsAre(0u));
}

TEST(HdrLogTest, CompressedFormInflatesToTheV2Encoding) {
  const Histogram h = Sample();
  absl::StatusOr<std::string> compressed = EncodeCompressedHdrHistogram(h);
  ASSERT_TRUE(compressed.ok()) << compressed.status();
  EXPECT_EQ(BigEndian32(*compressed, 0), 0x1c849314u);
  EXPECT_EQ(BigEndian32(*compressed, 4), compressed->size() - 8);
  const std::string expected = EncodeHdrHistogramV2(h);
  std::string inflated(expected.size() + 64, '\0');
  uLongf size = inflated.size();
  ASSERT_EQ(
      uncompress(reinterpret_cast<Bytef*>(inflated.data()), &size,
                 reinterpret_cast<const Bytef*>(compressed->data() + 8), compressed->size() - 8),
      Z_OK);
  inflated.resize(size);
  EXPECT_EQ(inflated, expected);
}

TEST(HdrLogTest, LogHasHistogramLogWritersHeaderAndOneLinePerInterval) {
  HdrLogWriter log(absl::FromUnixMillis(1'700'000'000'250));
  ASSERT_TRUE(log.AddInterval(0, 1.0, Sample()).ok());
  ASSERT_TRUE(log.AddInterval(1.0, 0.5, Histogram()).ok());
  const std::vector<std::string> lines = absl::StrSplit(log.contents(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 7u) << log.contents();
  EXPECT_THAT(lines[0], StartsWith("#[Logged with flightcache-loadgen"));
  EXPECT_EQ(lines[1], "#[Histogram log format version 1.3]");
  EXPECT_EQ(lines[2],
            "#[StartTime: 1700000000.250 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]");
  EXPECT_EQ(lines[3], "#[BaseTime: 1700000000.250 (seconds since epoch)]");
  EXPECT_EQ(lines[4],
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\","
            "\"Interval_Compressed_Histogram\"");
  const std::vector<std::string> first = absl::StrSplit(lines[5], ',');
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0], "0.000");
  EXPECT_EQ(first[1], "1.000");
  EXPECT_EQ(first[2], "25.000");  // the max, 25 ms, in ms
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(first[3], &decoded));
  EXPECT_EQ(decoded, *EncodeCompressedHdrHistogram(Sample()));
  EXPECT_THAT(lines[6], StartsWith("1.000,0.500,0.000,HISTF"));
}

}  // namespace
}  // namespace flightcache::loadgen
