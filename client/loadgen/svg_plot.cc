#include "client/loadgen/svg_plot.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flightcache::loadgen {
namespace {

// Margins around the plot area: room for tick labels, axis labels, title and legend.
constexpr double kLeft = 70;
constexpr double kRight = 20;
constexpr double kTop = 48;
constexpr double kBottom = 46;
// Where q = 1 (the max) goes on a nines axis: this far right of the highest finite quantile.
constexpr double kMaxOffset = 0.3;

struct Tick {
  double x;
  std::string label;
};

double NinesX(double q) { return -std::log10(1 - q); }

// 1, 2 or 5 times a power of ten, at least range / 5: about five ticks.
double NiceStep(double range) {
  if (!(range > 0)) return 1;
  const double raw = range / 5;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string Number(double v) { return absl::StrFormat("%.4g", v); }

std::vector<Tick> LinearTicks(double max, double& axis_max) {
  const double step = NiceStep(max);
  axis_max = std::max(step, std::ceil(max / step - 1e-9) * step);
  std::vector<Tick> ticks;
  for (int i = 0; i * step <= axis_max + step / 2; ++i) {
    ticks.push_back({i * step, Number(i * step)});
  }
  return ticks;
}

std::vector<Tick> NinesTicks(double max_finite, double max_x) {
  std::vector<Tick> ticks = {{0, "p0"}};
  const std::pair<double, const char*> named[] = {{0.5, "p50"},       {0.9, "p90"},
                                                  {0.99, "p99"},      {0.999, "p99.9"},
                                                  {0.9999, "p99.99"}, {0.99999, "p99.999"}};
  for (const auto& [q, label] : named) {
    if (NinesX(q) <= max_finite + 1e-9) ticks.push_back({NinesX(q), label});
  }
  ticks.push_back({max_x, "max"});
  return ticks;
}

}  // namespace

std::string XmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderLinePlot(const PlotSpec& spec) {
  const bool nines = spec.x_scale == XScale::kNines;
  // Data x as drawn: quantiles become -log10(1 - q); q = 1 is placed after the rest.
  double max_finite = 0;
  double max_y = 0;
  for (const PlotSeries& s : spec.series) {
    for (const auto& [x, y] : s.points) {
      if (!nines) {
        max_finite = std::max(max_finite, x);
      } else if (x < 1) {
        max_finite = std::max(max_finite, NinesX(std::max(0.0, x)));
      }
      if (std::isfinite(y)) max_y = std::max(max_y, y);
    }
  }
  const double max_nines_x = max_finite + kMaxOffset;
  auto drawn_x = [&](double x) {
    if (!nines) return x;
    return x >= 1 ? max_nines_x : NinesX(std::max(0.0, x));
  };
  double axis_max_x = 0;
  std::vector<Tick> x_ticks;
  if (nines) {
    axis_max_x = max_nines_x;
    x_ticks = NinesTicks(max_finite, max_nines_x);
  } else {
    x_ticks = LinearTicks(max_finite, axis_max_x);
  }
  double axis_max_y = 0;
  const std::vector<Tick> y_ticks = LinearTicks(max_y, axis_max_y);

  const double w = spec.width;
  const double h = spec.height;
  const double plot_w = w - kLeft - kRight;
  const double plot_h = h - kTop - kBottom;
  auto px = [&](double x) { return kLeft + plot_w * drawn_x(x) / axis_max_x; };
  auto px_drawn = [&](double dx) { return kLeft + plot_w * dx / axis_max_x; };
  auto py = [&](double y) { return kTop + plot_h * (1 - y / axis_max_y); };

  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" role=\"img\" font-family=\"sans-serif\" font-size=\"12\">"
      "<title>%s</title>"
      "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>"
      "<text x=\"%g\" y=\"18\" font-size=\"15\" font-weight=\"bold\" fill=\"#222222\">%s</text>",
      spec.width, spec.height, spec.width, spec.height, XmlEscape(spec.title), spec.width,
      spec.height, kLeft, XmlEscape(spec.title));
  // Grid and tick labels.
  for (const Tick& t : y_ticks) {
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"#dddddd\"/><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                          "fill=\"#444444\">%s</text>",
                          kLeft, py(t.x), w - kRight, py(t.x), kLeft - 6, py(t.x) + 4,
                          XmlEscape(t.label));
  }
  for (const Tick& t : x_ticks) {
    const double x = nines ? px_drawn(t.x) : px(t.x);
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"#dddddd\"/><text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"middle\" fill=\"#444444\">%s</text>",
                          x, kTop, x, h - kBottom, x, h - kBottom + 16, XmlEscape(t.label));
  }
  // Axes and their labels.
  absl::StrAppendFormat(&out,
                        "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#444444\"/>"
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#444444\">%s"
                        "</text><text transform=\"translate(14 %.1f) rotate(-90)\" "
                        "text-anchor=\"middle\" fill=\"#444444\">%s</text>",
                        kLeft, kTop, h - kBottom, w - kRight, kLeft + plot_w / 2, h - 8,
                        XmlEscape(spec.x_label), kTop + plot_h / 2, XmlEscape(spec.y_label));
  // Series, then the legend above the plot.
  double legend_x = kLeft;
  for (const PlotSeries& s : spec.series) {
    const std::string dash = s.dashed ? " stroke-dasharray=\"7 4\"" : "";
    if (s.points.size() == 1) {
      absl::StrAppendFormat(&out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>",
                            px(s.points[0].first), py(s.points[0].second), s.color);
    } else if (!s.points.empty()) {
      std::string points;
      for (const auto& [x, y] : s.points) {
        absl::StrAppendFormat(&points, "%s%.1f,%.1f", points.empty() ? "" : " ", px(x),
                              py(std::isfinite(y) ? y : 0));
      }
      absl::StrAppendFormat(&out,
                            "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" "
                            "stroke-width=\"2\" stroke-linejoin=\"round\"%s/>",
                            points, s.color, dash);
    }
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"32\" x2=\"%.1f\" y2=\"32\" stroke=\"%s\" "
                          "stroke-width=\"3\"%s/><text x=\"%.1f\" y=\"36\" fill=\"#222222\">%s"
                          "</text>",
                          legend_x, legend_x + 22, s.color, dash, legend_x + 27, XmlEscape(s.name));
    legend_x += 40 + 7.0 * static_cast<double>(s.name.size());
  }
  out += "</svg>";
  return out;
}

}  // namespace flightcache::loadgen
