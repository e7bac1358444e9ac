#include "client/loadgen/hdr_log.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flightcache::loadgen {
namespace {

// The cookies' low nibble of the second byte carries the word size; V2 writers put 1 there.
constexpr uint32_t kV2EncodingCookie = 0x1c849303 | 0x10;
constexpr uint32_t kV2CompressedEncodingCookie = 0x1c849304 | 0x10;

void PutBigEndian32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

void PutBigEndian64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

// HdrHistogram's "LEB128-64b9B": 7 bits a byte with a continuation bit for the first eight
// bytes; a ninth byte, when needed, carries the last 8 bits whole.
void PutZigZag(std::string& out, int64_t value) {
  uint64_t v = (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
  for (int i = 0; i < 8; ++i) {
    if (v < 0x80) {
      out.push_back(static_cast<char>(v));
      return;
    }
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

}  // namespace

std::string EncodeHdrHistogramV2(const Histogram& histogram) {
  // Counts up to the max's bucket, as HdrHistogram's encoder does (an empty histogram: one 0).
  const size_t limit = Histogram::BucketIndex(histogram.max()) + 1;
  std::string payload;
  for (size_t i = 0; i < limit;) {
    const uint64_t count = histogram.CountAtIndex(i);
    if (count != 0) {
      PutZigZag(payload, static_cast<int64_t>(std::min<uint64_t>(count, INT64_MAX)));
      ++i;
      continue;
    }
    size_t zeros = 0;
    while (i < limit && histogram.CountAtIndex(i) == 0) {
      ++zeros;
      ++i;
    }
    PutZigZag(payload, -static_cast<int64_t>(zeros));
  }
  const int64_t highest = std::max<int64_t>(
      kHdrMinHighestTrackableValue,
      static_cast<int64_t>(std::min<uint64_t>(Histogram::BucketHighest(limit - 1), INT64_MAX)));
  std::string out;
  PutBigEndian32(out, kV2EncodingCookie);
  PutBigEndian32(out, static_cast<uint32_t>(payload.size()));
  PutBigEndian32(out, 0);  // normalizingIndexOffset
  PutBigEndian32(out, kHdrSignificantDigits);
  PutBigEndian64(out, kHdrLowestDiscernibleValue);
  PutBigEndian64(out, static_cast<uint64_t>(highest));
  PutBigEndian64(out, std::bit_cast<uint64_t>(1.0));  // integerToDoubleValueConversionRatio
  out += payload;
  return out;
}

absl::StatusOr<std::string> EncodeCompressedHdrHistogram(const Histogram& histogram) {
  const std::string encoded = EncodeHdrHistogramV2(histogram);
  uLongf deflated_size = compressBound(encoded.size());
  std::string deflated(deflated_size, '\0');
  const int rc =
      compress2(reinterpret_cast<Bytef*>(deflated.data()), &deflated_size,
                reinterpret_cast<const Bytef*>(encoded.data()), encoded.size(), Z_BEST_COMPRESSION);
  if (rc != Z_OK) return absl::InternalError(absl::StrCat("zlib compress2 failed: ", rc));
  deflated.resize(deflated_size);
  std::string out;
  PutBigEndian32(out, kV2CompressedEncodingCookie);
  PutBigEndian32(out, static_cast<uint32_t>(deflated.size()));
  out += deflated;
  return out;
}

HdrLogWriter::HdrLogWriter(absl::Time start) {
  const double start_s = absl::ToDoubleSeconds(start - absl::UnixEpoch());
  // The header lines of HistogramLogWriter (format 1.3): version, start time (with Java's
  // Date.toString() form of the date), base time (so timestamps read as relative), legend.
  absl::StrAppendFormat(
      &contents_,
      "#[Logged with flightcache-loadgen: latency in ns, one histogram per "
      "interval]\n"
      "#[Histogram log format version 1.3]\n"
      "#[StartTime: %.3f (seconds since epoch), %s]\n"
      "#[BaseTime: %.3f (seconds since epoch)]\n"
      "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\","
      "\"Interval_Compressed_Histogram\"\n",
      start_s, absl::FormatTime("%a %b %d %H:%M:%S UTC %Y", start, absl::UTCTimeZone()), start_s);
}

absl::Status HdrLogWriter::AddInterval(double start_s, double length_s,
                                       const Histogram& histogram) {
  absl::StatusOr<std::string> compressed = EncodeCompressedHdrHistogram(histogram);
  if (!compressed.ok()) return compressed.status();
  absl::StrAppendFormat(&contents_, "%.3f,%.3f,%.3f,%s\n", start_s, length_s,
                        static_cast<double>(histogram.max()) / 1e6,
                        absl::Base64Escape(*compressed));
  return absl::OkStatus();
}

}  // namespace flightcache::loadgen
