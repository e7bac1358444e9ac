#include "client/loadgen/html_report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/loadgen/svg_plot.h"

namespace flightcache::loadgen {
namespace {

// Figures print with four significant digits everywhere in the page (tests format alike).
std::string Fig(double v) { return absl::StrFormat("%.4g", v); }

struct Figure {
  std::string name;
  double value;
  std::string unit;
};

// The figures a comparison puts side by side.
std::vector<Figure> HeadlineFigures(const RunSummary& r) {
  std::vector<Figure> f = {{"throughput", r.throughput_rps, "calls/s"},
                           {"p50", r.p50_ms, "ms"},
                           {"p90", r.p90_ms, "ms"},
                           {"p99", r.p99_ms, "ms"},
                           {"p99.9", r.p999_ms, "ms"},
                           {"max", r.max_ms, "ms"},
                           {"mean", r.mean_ms, "ms"},
                           {"error rate", r.error_rate, ""}};
  if (r.server.has_value()) {
    const ServerFigures& s = *r.server;
    f.insert(f.end(), {{"hit ratio", s.hit_ratio, ""},
                       {"coalescing ratio", s.coalescing_ratio, ""},
                       {"origin fetches per request", s.origin_fetches_per_request, ""},
                       {"hedges sent", s.hedges_sent, ""},
                       {"hedges won", s.hedges_won, ""},
                       {"stale served", s.stale_served, ""}});
  }
  return f;
}

// One series' name: the run's label too when several runs share a plot.
std::string SeriesName(const std::vector<LabeledRun>& runs, size_t i, absl::string_view what) {
  if (runs.size() == 1) return std::string(what);
  return what.empty() ? runs[i].label : absl::StrCat(runs[i].label, " ", what);
}

const char* CodeColor(absl::string_view code, size_t& next_error_color) {
  if (code == "OK") return "#2ca02c";
  if (code == "NOT_FOUND") return "#1f77b4";
  // Errors take the warm colours (red, orange, purple, brown) in order of appearance.
  static constexpr const char* kErrorColors[] = {"#d62728", "#ff7f0e", "#9467bd", "#8c564b"};
  return kErrorColors[next_error_color++ % std::size(kErrorColors)];
}

std::vector<PlotSpec> Plots(const std::vector<LabeledRun>& runs) {
  PlotSpec percentiles{.title = "Latency by percentile",
                       .x_label = "percentile",
                       .y_label = "latency (ms)",
                       .x_scale = XScale::kNines};
  PlotSpec throughput{
      .title = "Throughput per second", .x_label = "time (s)", .y_label = "calls/s"};
  PlotSpec over_time{
      .title = "Latency per second: p50 and p99", .x_label = "time (s)", .y_label = "latency (ms)"};
  PlotSpec codes{.title = "Status codes per second", .x_label = "time (s)", .y_label = "keys/s"};
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunSummary& r = runs[i].run;
    const bool dashed = i > 0;
    PlotSeries curve{.name = SeriesName(runs, i, ""),
                     .color = kPlotColors[i % std::size(kPlotColors)],
                     .points = r.latency_curve,
                     .dashed = dashed};
    if (curve.name.empty()) curve.name = "latency";
    percentiles.series.push_back(std::move(curve));

    PlotSeries achieved{.name = SeriesName(runs, i, "achieved"),
                        .color = kPlotColors[i % std::size(kPlotColors)],
                        .dashed = dashed};
    PlotSeries p50{.name = SeriesName(runs, i, "p50"), .color = "#1f77b4", .dashed = dashed};
    PlotSeries p99{.name = SeriesName(runs, i, "p99"), .color = "#d62728", .dashed = dashed};
    double end_s = 0;
    for (const RunSecond& s : r.timeline) {
      const double t = s.start_s + s.length_s;
      end_s = t;
      achieved.points.emplace_back(t, s.length_s > 0 ? s.calls / s.length_s : 0);
      if (s.calls > 0) {
        p50.points.emplace_back(t, s.p50_ms);
        p99.points.emplace_back(t, s.p99_ms);
      }
    }
    throughput.series.push_back(std::move(achieved));
    if (r.intended_rate_rps > 0) {
      throughput.series.push_back(
          {.name = SeriesName(runs, i, "intended"),
           .color = "#ff7f0e",
           .points = {{0, r.intended_rate_rps}, {end_s, r.intended_rate_rps}},
           .dashed = true});
    }
    over_time.series.push_back(std::move(p50));
    over_time.series.push_back(std::move(p99));
    size_t next_error_color = 0;
    for (const auto& [code, total] : r.status_codes) {
      PlotSeries series{.name = SeriesName(runs, i, code),
                        .color = CodeColor(code, next_error_color),
                        .dashed = dashed};
      for (const RunSecond& s : r.timeline) {
        double keys = 0;
        for (const auto& [c, n] : s.codes) {
          if (c == code) keys = n;
        }
        series.points.emplace_back(s.start_s + s.length_s, s.length_s > 0 ? keys / s.length_s : 0);
      }
      codes.series.push_back(std::move(series));
    }
  }
  return {percentiles, throughput, over_time, codes};
}

constexpr const char* kPlotStems[] = {"latency-percentiles", "throughput", "latency-over-time",
                                      "status-codes"};

constexpr char kStyle[] =
    "body{font-family:sans-serif;margin:24px auto;max-width:1100px;color:#222;"
    "background:#fff}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;"
    "border-bottom:1px solid #eee;text-align:left}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}svg{display:block;margin:8px 0}"
    "p.note{color:#555;font-size:13px}";

void AppendRow(std::string& out, absl::string_view name, const std::vector<std::string>& cells) {
  absl::StrAppend(&out, "<tr><th>", XmlEscape(name), "</th>");
  for (const std::string& c : cells) absl::StrAppend(&out, "<td class=\"num\">", c, "</td>");
  out += "</tr>";
}

std::string Page(absl::string_view title, absl::string_view body) {
  return absl::StrCat("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>",
                      XmlEscape(title), "</title><style>", kStyle, "</style></head><body><h1>",
                      XmlEscape(title), "</h1>", body, "</body></html>\n");
}

std::string Section(absl::string_view id, absl::string_view heading, absl::string_view content) {
  return absl::StrCat("<section id=\"", id, "\"><h2>", XmlEscape(heading), "</h2>", content,
                      "</section>");
}

// The sections with a table per run (one column each), after the plots.
std::string Sections(const std::vector<LabeledRun>& runs) {
  const std::vector<PlotSpec> plots = Plots(runs);
  std::vector<std::string> svg;
  svg.reserve(plots.size());
  for (const PlotSpec& p : plots) svg.push_back(RenderLinePlot(p));
  auto header = [&] {
    if (runs.size() == 1) return std::string();
    std::string h = "<tr><th></th>";
    for (const LabeledRun& r : runs) absl::StrAppend(&h, "<th>", XmlEscape(r.label), "</th>");
    return h + "</tr>";
  };
  auto row = [&](std::string& out, absl::string_view name, auto value_of) {
    std::vector<std::string> cells;
    cells.reserve(runs.size());
    for (const LabeledRun& r : runs) cells.push_back(value_of(r.run));
    AppendRow(out, name, cells);
  };

  std::string latency = "<table>" + header();
  for (const auto& [name, member] : {std::pair{"p50", &RunSummary::p50_ms},
                                     {"p90", &RunSummary::p90_ms},
                                     {"p99", &RunSummary::p99_ms},
                                     {"p99.9", &RunSummary::p999_ms},
                                     {"max", &RunSummary::max_ms},
                                     {"mean", &RunSummary::mean_ms}}) {
    row(latency, name, [m = member](const RunSummary& r) { return Fig(r.*m) + " ms"; });
  }
  latency += "</table>";

  std::string throughput = "<table>" + header();
  row(throughput, "calls", [](const RunSummary& r) { return Fig(r.calls); });
  row(throughput, "elapsed", [](const RunSummary& r) { return Fig(r.elapsed_s) + " s"; });
  row(throughput, "achieved rate",
      [](const RunSummary& r) { return Fig(r.throughput_rps) + " calls/s"; });
  row(throughput, "intended rate", [](const RunSummary& r) {
    return r.intended_rate_rps > 0 ? Fig(r.intended_rate_rps) + " calls/s"
                                   : std::string("closed loop");
  });
  throughput += "</table>";

  std::string status = "<table>" + header();
  std::vector<std::string> code_names;
  for (const LabeledRun& r : runs) {
    for (const auto& [code, n] : r.run.status_codes) {
      if (std::find(code_names.begin(), code_names.end(), code) == code_names.end()) {
        code_names.push_back(code);
      }
    }
  }
  for (const std::string& code : code_names) {
    row(status, code, [&code](const RunSummary& r) {
      double keys = 0;
      for (const auto& [c, n] : r.status_codes) {
        if (c == code) keys = n;
      }
      return Fig(keys);
    });
  }
  row(status, "error rate", [](const RunSummary& r) { return Fig(r.error_rate); });
  status += "</table>";

  std::string savings = "<table>" + header();
  const bool any_server = std::any_of(runs.begin(), runs.end(),
                                      [](const LabeledRun& r) { return r.run.server.has_value(); });
  if (any_server) {
    for (const auto& [name, member] :
         {std::pair{"hit ratio", &ServerFigures::hit_ratio},
          {"coalescing ratio", &ServerFigures::coalescing_ratio},
          {"origin fetches per request", &ServerFigures::origin_fetches_per_request},
          {"origin fetches", &ServerFigures::origin_fetches},
          {"server requests", &ServerFigures::requests},
          {"hedges sent", &ServerFigures::hedges_sent},
          {"hedges won", &ServerFigures::hedges_won},
          {"stale served", &ServerFigures::stale_served}}) {
      row(savings, name, [m = member](const RunSummary& r) {
        return r.server.has_value() ? Fig((*r.server).*m) : std::string("n/a");
      });
    }
  }
  savings += "</table>";
  for (const LabeledRun& r : runs) {
    if (!r.run.server.has_value()) {
      absl::StrAppend(&savings, "<p class=\"note\">", XmlEscape(runs.size() > 1 ? r.label : ""),
                      runs.size() > 1 ? ": " : "",
                      "server stats unavailable: ", XmlEscape(r.run.server_stats_error), "</p>");
    }
  }
  savings +=
      "<p class=\"note\">Deltas of the server's Stats over the run: other clients of "
      "the same server are included.</p>";

  std::string config;
  for (const LabeledRun& r : runs) {
    if (runs.size() > 1) absl::StrAppend(&config, "<h3>", XmlEscape(r.label), "</h3>");
    config += "<table>";
    AppendRow(config, "target", {XmlEscape(r.run.target)});
    AppendRow(config, "mode", {XmlEscape(r.run.mode)});
    if (!r.run.distribution.empty()) {
      AppendRow(config, "distribution", {XmlEscape(r.run.distribution)});
    }
    for (const auto& [name, value] : r.run.settings) {
      AppendRow(config, absl::StrCat("--", name), {XmlEscape(value)});
    }
    config += "</table>";
  }

  return absl::StrCat(Section("latency", "Latency distribution", svg[0] + latency),
                      Section("throughput", "Throughput", svg[1] + throughput),
                      Section("latency-over-time", "Latency over time", svg[2]),
                      Section("status", "Status codes", svg[3] + status),
                      Section("savings", "Server savings", savings),
                      Section("configuration", "Configuration", config));
}

std::string Ratio(double a, double b) {
  return a == 0 ? std::string("n/a") : absl::StrFormat("%.3f", b / a);
}

}  // namespace

std::string RenderRunReport(const RunSummary& run) {
  const std::string summary = absl::StrFormat(
      "<p class=\"note\">%s calls to %s in %s s (%s mode): %s calls/s, p99 %s ms, error rate "
      "%s.</p>",
      Fig(run.calls), XmlEscape(run.target), Fig(run.elapsed_s), XmlEscape(run.mode),
      Fig(run.throughput_rps), Fig(run.p99_ms), Fig(run.error_rate));
  return Page("flightcache-loadgen report", summary + Sections({{"run", run}}));
}

std::string RenderCompareReport(const LabeledRun& a, const LabeledRun& b) {
  std::string ratios = "<table><tr><th></th><th>" + XmlEscape(a.label) + " (A)</th><th>" +
                       XmlEscape(b.label) + " (B)</th><th>B/A</th></tr>";
  const std::vector<Figure> fa = HeadlineFigures(a.run);
  const std::vector<Figure> fb = HeadlineFigures(b.run);
  for (const Figure& x : fa) {
    for (const Figure& y : fb) {
      if (x.name != y.name) continue;
      const std::string unit = x.unit.empty() ? "" : " " + x.unit;
      AppendRow(ratios, x.name,
                {Fig(x.value) + unit, Fig(y.value) + unit, Ratio(x.value, y.value)});
    }
  }
  ratios += "</table>";
  return Page(absl::StrCat("flightcache-loadgen comparison: ", a.label, " vs ", b.label),
              Section("ratios", "Headline figures", ratios) + Sections({a, b}));
}

std::vector<std::pair<std::string, std::string>> RenderPlots(const std::vector<LabeledRun>& runs) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::vector<PlotSpec> plots = Plots(runs);
  for (size_t i = 0; i < plots.size(); ++i) {
    out.emplace_back(kPlotStems[i], RenderLinePlot(plots[i]) + "\n");
  }
  return out;
}

std::string FormatCompareText(const LabeledRun& a, const LabeledRun& b) {
  std::string out = absl::StrFormat("%-28s %14s %14s %8s\n", "", "A", "B", "B/A");
  absl::StrAppendFormat(&out, "%-28s %14s %14s\n", "run", a.label, b.label);
  const std::vector<Figure> fa = HeadlineFigures(a.run);
  const std::vector<Figure> fb = HeadlineFigures(b.run);
  for (const Figure& x : fa) {
    for (const Figure& y : fb) {
      if (x.name != y.name) continue;
      absl::StrAppendFormat(&out, "%-28s %14s %14s %8s\n",
                            x.unit.empty() ? x.name : absl::StrCat(x.name, " (", x.unit, ")"),
                            Fig(x.value), Fig(y.value), Ratio(x.value, y.value));
    }
  }
  return out;
}

}  // namespace flightcache::loadgen
