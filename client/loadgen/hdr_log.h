// HdrHistogram interval logs (--hdr-log): the latency histogram of each interval of a run in the
// format HdrHistogram's HistogramLogWriter writes, so that its tools (HistogramLogProcessor, the
// plotters, HdrHistogram_c's hdr_log_read) read what the loadgen measured.
//
// Our Histogram has exactly HdrHistogram's bucket layout for lowestDiscernibleValue = 1 and
// numberOfSignificantValueDigits = 2 (256 exact values, then 128 sub-buckets per power of two;
// HdrHistogram's counts index equals Histogram::BucketIndex), so encoding is a walk over our
// counts: the V2 encoding (big-endian header, then the counts as ZigZag LEB128 varints with a
// run of N zero counts written as -N), deflated with zlib and wrapped in the compressed header,
// then base64 on one log line.
//
// Thread-safety: EncodeHdrHistogramV2 and EncodeCompressedHdrHistogram are pure; HdrLogWriter is
// a value type, not thread-safe.
//
// Usage:
//   HdrLogWriter log(absl::Now());
//   log.AddInterval(0.0, 1.0, interval_histogram);   // latencies in ns; the max is logged in ms
//   WriteFileAtomically(path, log.contents());
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_HDR_LOG_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_HDR_LOG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/loadgen/histogram.h"

namespace flightcache::loadgen {

// What the encoding's header says of our layout.
inline constexpr int kHdrSignificantDigits = 2;
inline constexpr int64_t kHdrLowestDiscernibleValue = 1;
// One hour in ns, or the histogram's max if higher: what the header declares as trackable.
inline constexpr int64_t kHdrMinHighestTrackableValue = int64_t{3600} * 1000 * 1000 * 1000;

// The uncompressed V2 encoding (cookie 0x1c849313: the V2 base with word size 1, as the
// reference writers set it).
std::string EncodeHdrHistogramV2(const Histogram& histogram);

// The compressed form (cookie 0x1c849314, length, zlib stream of the V2 encoding).
absl::StatusOr<std::string> EncodeCompressedHdrHistogram(const Histogram& histogram);

class HdrLogWriter final {
 public:
  // `start` is the log's StartTime and BaseTime; interval timestamps are seconds after it.
  explicit HdrLogWriter(absl::Time start);

  // One log line: start and length in seconds, the max in ms (values are ns: HdrHistogram's
  // default maxValueUnitRatio of 1e6), the compressed histogram in base64.
  absl::Status AddInterval(double start_s, double length_s, const Histogram& histogram);

  const std::string& contents() const { return contents_; }

 private:
  std::string contents_;
};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_HDR_LOG_H_
