#include "client/loadgen/report.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

ServerStats Before() {
  ServerStats s;
  s.requests = 1000;
  s.hits = 700;
  s.misses = 300;
  s.coalesced = 100;
  s.loads_started = 200;
  s.origin_fetches = 210;
  s.hedges_sent = 10;
  s.hedges_won = 4;
  s.entries = 50;
  return s;
}

ServerStats After() {
  ServerStats s = Before();
  s.requests += 1000;
  s.hits += 880;
  s.negative_hits += 20;
  s.misses += 100;
  s.coalesced += 75;
  s.loads_started += 25;
  s.origin_fetches += 30;
  s.hedges_sent += 5;
  s.hedges_won += 2;
  s.entries = 75;
  s.loads_inflight = 3;
  return s;
}

TEST(ReportTest, DeltaSubtractsCountersAndKeepsGauges) {
  const ServerStats d = Delta(Before(), After());
  EXPECT_EQ(d.requests, 1000);
  EXPECT_EQ(d.hits, 880);
  EXPECT_EQ(d.origin_fetches, 30);
  EXPECT_EQ(d.entries, 75);        // a gauge: the value after the run
  EXPECT_EQ(d.loads_inflight, 3);  // a gauge
}

TEST(ReportTest, SavingsAreTheSpecRatios) {
  const ServerSavings s = Savings(Delta(Before(), After()));
  EXPECT_DOUBLE_EQ(s.hit_ratio, 0.9);          // (880 + 20) / 1000
  EXPECT_DOUBLE_EQ(s.coalescing_ratio, 0.75);  // 75 / 100 misses joined a load
  EXPECT_DOUBLE_EQ(s.origin_fetches_per_request, 0.03);
  EXPECT_EQ(s.hedges_sent, 5);
  EXPECT_EQ(s.hedges_won, 2);
  EXPECT_EQ(Savings(ServerStats()).hit_ratio, 0.0);  // no division by zero
}

Report SampleReport() {
  LatencyRecorder recorder;
  for (int i = 1; i <= 1000; ++i) {
    recorder.Record(
        absl::Microseconds(i * 10),
        {{i % 100 == 0 ? absl::StatusCode::kUnavailable : absl::StatusCode::kOk, Source::kHit}});
  }
  Report r;
  r.target = "127.0.0.1:50051";
  r.mode = "closed";
  r.distribution = "zipf:0.99";
  r.elapsed = absl::Seconds(2);
  r.totals = recorder.Totals();
  r.server_delta = Delta(Before(), After());
  r.max_error_rate = 0.05;
  return r;
}

TEST(ReportTest, TextShowsEverythingTheSpecAsksFor) {
  const std::string text = FormatText(SampleReport());
  EXPECT_THAT(text, HasSubstr("1000 calls"));
  EXPECT_THAT(text, HasSubstr("500.0 calls/s"));
  EXPECT_THAT(text, HasSubstr("OK=990"));
  EXPECT_THAT(text, HasSubstr("UNAVAILABLE=10"));
  for (const char* p : {"p50=", "p90=", "p99=", "p99.9=", "max="}) EXPECT_THAT(text, HasSubstr(p));
  EXPECT_THAT(text, ContainsRegex("p50=(4\\.9[0-9]|5|5\\.0[0-9])ms"));  // 5 ms within 1%
  EXPECT_THAT(text, HasSubstr("max=10ms"));
  EXPECT_THAT(text, HasSubstr("hit_ratio=0.9000"));
  EXPECT_THAT(text, HasSubstr("coalescing_ratio=0.7500"));
  EXPECT_THAT(text, HasSubstr("origin_fetches_per_request=0.0300"));
  EXPECT_THAT(text, HasSubstr("hedges_sent=5 hedges_won=2"));
}

TEST(ReportTest, JsonCarriesTheSameFigures) {
  const std::string json = FormatJson(SampleReport());
  EXPECT_THAT(json, HasSubstr("\"requests\":1000"));
  EXPECT_THAT(json, HasSubstr("\"throughput_rps\":500"));
  EXPECT_THAT(json, HasSubstr("\"status_codes\":{\"OK\":990,\"UNAVAILABLE\":10}"));
  EXPECT_THAT(json, HasSubstr("\"error_rate\":0.01"));
  EXPECT_THAT(json, HasSubstr("\"error_rate_exceeded\":false"));
  EXPECT_THAT(json, HasSubstr("\"p99.9\":"));
  EXPECT_THAT(json, HasSubstr("\"max\":10"));
  EXPECT_THAT(json, HasSubstr("\"hit_ratio\":0.9"));
  EXPECT_THAT(json, HasSubstr("\"origin_fetches_per_request\":0.03"));
  EXPECT_EQ(json.back(), '\n');
}

TEST(ReportTest, AMixedRunShowsItsCallsByKind) {
  Report r = SampleReport();
  // Only Gets: no "calls" line in the text; the JSON always has the breakdown.
  EXPECT_THAT(FormatText(r), Not(HasSubstr("Invalidate=")));
  EXPECT_THAT(FormatJson(r),
              HasSubstr("\"calls_by_kind\":{\"Get\":1000,\"BatchGet\":0,\"Invalidate\":0}"));
  r.totals.kinds = {700, 200, 100};
  EXPECT_THAT(FormatText(r), HasSubstr("calls       Get=700 BatchGet=200 Invalidate=100\n"));
  EXPECT_THAT(FormatJson(r),
              HasSubstr("\"calls_by_kind\":{\"Get\":700,\"BatchGet\":200,\"Invalidate\":100}"));
}

TEST(ReportTest, MissingServerStatsAreExplained) {
  Report r = SampleReport();
  r.server_delta.reset();
  r.server_stats_error = "Stats: UNIMPLEMENTED";
  EXPECT_THAT(FormatText(r), HasSubstr("stats unavailable: Stats: UNIMPLEMENTED"));
  EXPECT_THAT(FormatJson(r), HasSubstr("\"server_stats_error\":\"Stats: UNIMPLEMENTED\""));
  EXPECT_THAT(FormatJson(r), Not(HasSubstr("hit_ratio")));
}

TEST(ReportTest, ErrorRateAboveTheLimitIsFlagged) {
  Report r = SampleReport();
  r.max_error_rate = 0.005;  // 1% of keys failed
  EXPECT_TRUE(r.error_rate_exceeded());
  EXPECT_THAT(FormatJson(r), HasSubstr("\"error_rate_exceeded\":true"));
  r.max_error_rate = 0.01;  // equal is not above
  EXPECT_FALSE(r.error_rate_exceeded());
}

TEST(ReportTest, LatenciesAreFormattedReadably) {
  EXPECT_EQ(FormatLatency(999), "999ns");
  EXPECT_EQ(FormatLatency(1500), "1.5us");
  EXPECT_EQ(FormatLatency(2340000), "2.34ms");
  EXPECT_EQ(FormatLatency(3000000000), "3s");
}

}  // namespace
}  // namespace flightcache::loadgen
