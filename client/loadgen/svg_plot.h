// SvgLinePlot: a line chart as one self-contained SVG element (inline styles, no script, no
// external font or file), for the loadgen's HTML report and the plots in docs/.
//
// The x axis is linear (seconds of a run) or "nines": x values are quantiles q, drawn at
// -log10(1 - q) with ticks p50, p90, p99, ... as HdrHistogram and wrk2 percentile plots do, and
// q = 1 (the max) a little right of the highest finite quantile, labelled "max". The y axis is
// linear from 0 with round ticks.
//
// Thread-safety: pure functions.
//
// Usage:
//   PlotSpec spec{.title = "Latency by percentile", .x_scale = XScale::kNines};
//   spec.series.push_back({.name = "run", .color = "#1f77b4", .points = {{0.5, 1.2}, ...}});
//   std::string svg = RenderLinePlot(spec);
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_SVG_PLOT_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_SVG_PLOT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace flightcache::loadgen {

enum class XScale { kLinear, kNines };

struct PlotSeries {
  std::string name;
  std::string color;                              // an SVG colour, "#rrggbb"
  std::vector<std::pair<double, double>> points;  // (x, y), in x order
  bool dashed = false;
};

struct PlotSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  XScale x_scale = XScale::kLinear;
  std::vector<PlotSeries> series;
  int width = 760;
  int height = 340;
};

// The chart as an <svg> element with its xmlns (valid standalone, or inline in HTML).
std::string RenderLinePlot(const PlotSpec& spec);

// `text` with &, <, >, " and ' escaped, for XML and HTML text and attributes.
std::string XmlEscape(absl::string_view text);

// The colours of plotted series, in order; distinct from the greys of axes and grid.
inline constexpr const char* kPlotColors[] = {"#1f77b4", "#d62728", "#2ca02c",
                                              "#ff7f0e", "#9467bd", "#8c564b"};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_SVG_PLOT_H_
