// The JSON report read back (run_summary.h) and the HTML pages made of it (html_report.h).
#include "client/loadgen/html_report.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/loadgen/report.h"
#include "client/loadgen/run_summary.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Report OpenLoopReport() {
  Report r;
  r.target = "127.0.0.1:1234";
  r.mode = "open";
  r.distribution = "zipf:1.1";
  r.elapsed = absl::Seconds(2);
  r.intended_rate = 500;
  for (int i = 1; i <= 900; ++i) {
    r.totals.latency_ns.Record(uint64_t{1000} * static_cast<uint64_t>(i));  // 1 us .. 900 us
  }
  r.totals.calls = 1000;
  r.totals.items = 1000;
  r.totals.codes[0] = 990;
  r.totals.codes[4] = 10;  // DEADLINE_EXCEEDED
  r.totals.latency_ns.Record(40'000'000, 100);
  RunTotals first;
  first.calls = 600;
  first.codes[0] = 600;
  first.latency_ns.Record(2'000'000, 600);
  RunTotals second;
  second.calls = 400;
  second.codes[0] = 390;
  second.codes[4] = 10;
  second.latency_ns.Record(40'000'000, 400);
  r.timeline = {SummarizeInterval(0, 1, first), SummarizeInterval(1, 1, second)};
  ServerStats d;
  d.requests = 1000;
  d.hits = 750;
  d.misses = 250;
  d.coalesced = 50;
  d.origin_fetches = 210;
  d.hedges_sent = 12;
  d.hedges_won = 5;
  d.stale_served = 3;
  r.server_delta = d;
  r.settings = {{"rate", "500"}, {"keys", "2000"}};
  return r;
}

RunSummary Parsed(const Report& r) {
  absl::StatusOr<RunSummary> run = ParseRunSummary(FormatJson(r));
  EXPECT_TRUE(run.ok()) << run.status();
  return run.ok() ? *run : RunSummary();
}

TEST(RunSummaryTest, ReadsBackWhatFormatJsonWrote) {
  const RunSummary run = Parsed(OpenLoopReport());
  EXPECT_EQ(run.target, "127.0.0.1:1234");
  EXPECT_EQ(run.mode, "open");
  EXPECT_EQ(run.calls, 1000);
  EXPECT_EQ(run.intended_rate_rps, 500);
  EXPECT_EQ(run.throughput_rps, 500);
  ASSERT_EQ(run.status_codes.size(), 2u);
  EXPECT_EQ(run.status_codes[0], (std::pair<std::string, double>{"OK", 990}));
  EXPECT_EQ(run.status_codes[1], (std::pair<std::string, double>{"DEADLINE_EXCEEDED", 10}));
  EXPECT_NEAR(run.max_ms, 40, 0.001);
  ASSERT_GE(run.latency_curve.size(), 3u);
  EXPECT_EQ(run.latency_curve.front().first, 0);
  EXPECT_EQ(run.latency_curve.back().first, 1);
  EXPECT_NEAR(run.latency_curve.back().second, 40, 0.001);
  ASSERT_EQ(run.timeline.size(), 2u);
  EXPECT_EQ(run.timeline[1].calls, 400);
  EXPECT_NEAR(run.timeline[1].p99_ms, 40, 0.4);
  ASSERT_TRUE(run.server.has_value());
  EXPECT_EQ(run.server->hit_ratio, 0.75);
  EXPECT_EQ(run.server->hedges_won, 5);
  EXPECT_EQ(run.server->stale_served, 3);
  EXPECT_EQ(run.settings.size(), 2u);
}

TEST(RunSummaryTest, CurveResolvesAsManyNinesAsTheCountAllows) {
  // 1000 values: 1 - 10^-3 is the last finite quantile, then the max.
  const std::vector<double> q = CurveQuantiles(1000);
  ASSERT_EQ(q.size(), 32u);
  EXPECT_NEAR(q[q.size() - 2], 0.999, 1e-12);
  EXPECT_EQ(q.back(), 1.0);
  EXPECT_EQ(CurveQuantiles(0).size(), 2u);
}

TEST(RunSummaryTest, RejectsWhatIsNotAReportOfThisVersionWithCalls) {
  const std::string good = FormatJson(OpenLoopReport());
  auto error = [](absl::string_view json) {
    absl::StatusOr<RunSummary> run = ParseRunSummary(json);
    return run.ok() ? std::string("(parsed)") : std::string(run.status().message());
  };
  EXPECT_THAT(error("not json"), HasSubstr("not a flightcache-loadgen JSON report"));
  EXPECT_THAT(error("[1,2]"), HasSubstr("not a flightcache-loadgen JSON report"));
  EXPECT_THAT(error("{\"requests\":3}"), HasSubstr("not a flightcache-loadgen JSON report"));
  EXPECT_THAT(error(absl::StrReplaceAll(good, {{"\"schema_version\":2", "\"schema_version\":1"}})),
              HasSubstr("schema version 1, but this loadgen reads version 2"));
  EXPECT_THAT(error(absl::StrReplaceAll(good, {{"\"requests\":1000,\"keys\"",
                                                "\"requests\":0,"
                                                "\"keys\""}})),
              HasSubstr("the run has no calls"));
  EXPECT_THAT(error(absl::StrReplaceAll(good, {{"\"p99\":", "\"p99\":\"x\",\"y\":"}})),
              HasSubstr("field \"latency_ms.p99\" is not a number"));
  EXPECT_THAT(error(absl::StrReplaceAll(good, {{"\"timeline\":[", "\"timeline\":[7,"}})),
              HasSubstr("\"timeline\" holds a non-object"));
  EXPECT_THAT(
      error(absl::StrReplaceAll(good, {{"\"latency_curve\":[", "\"latency_curve\":[[1],"}})),
      HasSubstr("\"latency_curve\" holds something else than a pair of numbers"));
}

TEST(RunSummaryTest, MissingFileIsAnErrorNamingIt) {
  absl::StatusOr<RunSummary> run = ReadRunSummaryFile("/nonexistent/run.json");
  ASSERT_FALSE(run.ok());
  EXPECT_THAT(run.status().message(), HasSubstr("/nonexistent/run.json"));
}

TEST(HtmlReportTest, HasEverySectionWithTheRunsFigures) {
  const std::string html = RenderRunReport(Parsed(OpenLoopReport()));
  for (const char* id :
       {"latency", "throughput", "latency-over-time", "status", "savings", "configuration"}) {
    EXPECT_THAT(html, HasSubstr(absl::StrCat("<section id=\"", id, "\">"))) << id;
  }
  EXPECT_EQ(html.find("<!DOCTYPE html>"), 0u);
  EXPECT_THAT(html, HasSubstr("<th>max</th><td class=\"num\">40 ms</td>"));
  EXPECT_THAT(html, HasSubstr("<th>intended rate</th><td class=\"num\">500 calls/s</td>"));
  EXPECT_THAT(html, HasSubstr("<th>DEADLINE_EXCEEDED</th><td class=\"num\">10</td>"));
  EXPECT_THAT(html, HasSubstr("<th>hit ratio</th><td class=\"num\">0.75</td>"));
  EXPECT_THAT(html, HasSubstr("<th>hedges won</th><td class=\"num\">5</td>"));
  EXPECT_THAT(html, HasSubstr("<th>stale served</th><td class=\"num\">3</td>"));
  EXPECT_THAT(html, HasSubstr("<th>--rate</th><td class=\"num\">500</td>"));
  EXPECT_THAT(html, HasSubstr(">intended</text>"));  // the open loop's intended-rate line
  // Self-contained: nothing to run, nothing to fetch.
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("href=")));
  EXPECT_THAT(html, Not(HasSubstr("@import")));
}

TEST(HtmlReportTest, ComparisonShowsBothRunsAndTheirRatios) {
  Report slower = OpenLoopReport();
  slower.elapsed = absl::Seconds(4);  // half the throughput
  const std::string html =
      RenderCompareReport({"fast", Parsed(OpenLoopReport())}, {"slow", Parsed(slower)});
  EXPECT_THAT(html, HasSubstr("<section id=\"ratios\">"));
  EXPECT_THAT(html, HasSubstr("<th>throughput</th><td class=\"num\">500 calls/s</td>"
                              "<td class=\"num\">250 calls/s</td><td class=\"num\">0.500</td>"));
  EXPECT_THAT(html, HasSubstr(">fast achieved</text>"));
  EXPECT_THAT(html, HasSubstr(">slow achieved</text>"));
  EXPECT_THAT(html, HasSubstr("stroke-dasharray"));  // the second run is dashed
  const std::string text =
      FormatCompareText({"fast", Parsed(OpenLoopReport())}, {"slow", Parsed(slower)});
  EXPECT_THAT(text, testing::ContainsRegex("throughput \\(calls/s\\) +500 +250 +0.500"));
}

TEST(HtmlReportTest, PlotsAreStandaloneSvgFiles) {
  const auto plots = RenderPlots({{"run", Parsed(OpenLoopReport())}});
  ASSERT_EQ(plots.size(), 4u);
  EXPECT_EQ(plots[0].first, "latency-percentiles");
  for (const auto& [stem, svg] : plots) {
    EXPECT_EQ(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), 0u) << stem;
  }
}

}  // namespace
}  // namespace flightcache::loadgen
