#include "client/loadgen/svg_plot.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

PlotSpec Percentiles() {
  PlotSpec spec{.title = "Latency <by> percentile & more",
                .x_label = "percentile",
                .y_label = "ms",
                .x_scale = XScale::kNines};
  spec.series.push_back({.name = "run \"A\"",
                         .color = "#1f77b4",
                         .points = {{0, 1}, {0.5, 2}, {0.9, 3}, {0.99, 8}, {0.999, 40}, {1, 50}}});
  return spec;
}

TEST(SvgPlotTest, IsOneSvgElementWithEscapedText) {
  const std::string svg = RenderLinePlot(Percentiles());
  EXPECT_THAT(svg, StartsWith("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, testing::EndsWith("</svg>"));
  EXPECT_THAT(svg, HasSubstr("<title>Latency &lt;by&gt; percentile &amp; more</title>"));
  EXPECT_THAT(svg, HasSubstr(">run &quot;A&quot;</text>"));
  EXPECT_THAT(svg, Not(HasSubstr("<script")));
}

TEST(SvgPlotTest, NinesAxisTicksStopAtTheResolvedQuantileThenMax) {
  const std::string svg = RenderLinePlot(Percentiles());
  for (const char* tick : {">p50<", ">p90<", ">p99<", ">p99.9<", ">max<"}) {
    EXPECT_THAT(svg, HasSubstr(tick));
  }
  EXPECT_THAT(svg, Not(HasSubstr(">p99.99<")));  // no data that far
  // The series is drawn in its colour, through all six points.
  EXPECT_THAT(svg, testing::ContainsRegex("<polyline points=\"([0-9.]+,[0-9.]+ ){5}[0-9.]+,"
                                          "[0-9.]+\" fill=\"none\" stroke=\"#1f77b4\""));
}

TEST(SvgPlotTest, PointsMapIntoThePlotArea) {
  PlotSpec spec{.title = "t", .width = 400, .height = 200};
  spec.series.push_back({.name = "s", .color = "#d62728", .points = {{0, 0}, {10, 100}}});
  const std::string svg = RenderLinePlot(spec);
  // x 0..10 spans the plot's width (70 .. 380), y 0..100 its height (154 .. 48).
  EXPECT_THAT(svg, HasSubstr("points=\"70.0,154.0 380.0,48.0\""));
}

TEST(SvgPlotTest, EmptyAndSinglePointSeriesDrawWithoutNan) {
  PlotSpec spec{.title = "t"};
  spec.series.push_back({.name = "none", .color = "#2ca02c"});
  spec.series.push_back({.name = "one", .color = "#ff7f0e", .points = {{0, 0}}});
  const std::string svg = RenderLinePlot(spec);
  EXPECT_THAT(svg, HasSubstr("<circle"));
  EXPECT_THAT(svg, Not(HasSubstr("nan")));
  EXPECT_THAT(svg, Not(HasSubstr("inf")));
}

}  // namespace
}  // namespace flightcache::loadgen
