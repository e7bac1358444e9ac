#include "client/loadgen/recorder.h"

#include <array>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

using absl::StatusCode;

TEST(LatencyRecorderTest, CountsCallsItemsCodesAndSources) {
  LatencyRecorder recorder;
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kOk, Source::kHit}});
  recorder.Record(absl::Milliseconds(2), {{StatusCode::kOk, Source::kLoaded},
                                          {StatusCode::kNotFound, Source::kUnspecified},
                                          {StatusCode::kDeadlineExceeded, Source::kUnspecified}});
  const RunTotals t = recorder.Totals();
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(t.items, 4);
  EXPECT_EQ(t.codes[static_cast<int>(StatusCode::kOk)], 2);
  EXPECT_EQ(t.codes[static_cast<int>(StatusCode::kNotFound)], 1);
  EXPECT_EQ(t.codes[static_cast<int>(StatusCode::kDeadlineExceeded)], 1);
  EXPECT_EQ(t.sources[static_cast<int>(Source::kHit)], 1);
  EXPECT_EQ(t.sources[static_cast<int>(Source::kLoaded)], 1);
  EXPECT_EQ(t.latency_ns.count(), 2u);  // one latency per call, not per key
  EXPECT_EQ(t.latency_ns.max(), 2000000u);
}

TEST(LatencyRecorderTest, CountsFleetAnswersUnderTheirOwnName) {
  LatencyRecorder recorder;
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kOk, Source::kFleet}});
  EXPECT_EQ(recorder.Totals().sources[static_cast<int>(Source::kFleet)], 1);
  EXPECT_EQ(SourceName(Source::kFleet), "FLEET");
}

TEST(LatencyRecorderTest, CountsCallsByKind) {
  LatencyRecorder recorder;
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kOk, Source::kHit}});  // Get by default
  recorder.Record(absl::Milliseconds(1),
                  {{StatusCode::kOk, Source::kHit}, {StatusCode::kOk, Source::kLoaded}},
                  CallKind::kBatchGet);
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kOk, Source::kUnspecified}},
                  CallKind::kInvalidate);
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kOk, Source::kUnspecified}},
                  CallKind::kInvalidate);
  const RunTotals t = recorder.Totals();
  EXPECT_EQ(t.kinds, (std::array<int64_t, kCallKindCount>{1, 1, 2}));
  EXPECT_EQ(t.items, 5);
  EXPECT_EQ(t.sources[static_cast<int>(Source::kHit)], 2);
  EXPECT_EQ(recorder.TakeInterval().kinds[static_cast<int>(CallKind::kInvalidate)], 2);
}

TEST(LatencyRecorderTest, NotFoundIsAnAnswerNotAnError) {
  LatencyRecorder recorder;
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kNotFound, Source::kUnspecified}});
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kOk, Source::kHit}});
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kUnavailable, Source::kUnspecified}});
  recorder.Record(absl::Milliseconds(1), {{StatusCode::kResourceExhausted, Source::kUnspecified}});
  const RunTotals t = recorder.Totals();
  EXPECT_EQ(t.errors(), 2);
  EXPECT_DOUBLE_EQ(t.error_rate(), 0.5);
}

TEST(LatencyRecorderTest, UnknownCodesAndNegativeLatenciesAreClamped) {
  LatencyRecorder recorder;
  recorder.Record(-absl::Seconds(1), {{static_cast<StatusCode>(99), Source::kUnspecified}});
  const RunTotals t = recorder.Totals();
  EXPECT_EQ(t.codes[static_cast<int>(StatusCode::kUnknown)], 1);
  EXPECT_EQ(t.latency_ns.max(), 0u);
}

TEST(LatencyRecorderTest, TakeIntervalResetsOnlyTheInterval) {
  LatencyRecorder recorder;
  recorder.Record(absl::Milliseconds(5), {{StatusCode::kOk, Source::kHit}});
  EXPECT_EQ(recorder.TakeInterval().calls, 1);
  EXPECT_EQ(recorder.TakeInterval().calls, 0);
  recorder.Record(absl::Milliseconds(5), {{StatusCode::kOk, Source::kHit}});
  EXPECT_EQ(recorder.TakeInterval().calls, 1);
  EXPECT_EQ(recorder.Totals().calls, 2);
}

TEST(LatencyRecorderTest, ConcurrentRecordsAreAllCounted) {
  LatencyRecorder recorder;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        recorder.Record(absl::Microseconds(i), {{StatusCode::kOk, Source::kCoalesced}});
        if (i % 1000 == 0) recorder.TakeInterval();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(recorder.Totals().calls, 20000);
  EXPECT_EQ(recorder.Totals().sources[static_cast<int>(Source::kCoalesced)], 20000);
}

}  // namespace
}  // namespace flightcache::loadgen
