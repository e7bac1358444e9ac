#include "client/loadgen/report.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "flightcache/support/json_writer.h"

namespace flightcache::loadgen {
namespace {

using support::JsonObjectWriter;

double Ratio(int64_t numerator, int64_t denominator) {
  return denominator <= 0 ? 0.0 : static_cast<double>(numerator) / static_cast<double>(denominator);
}

struct Percentile {
  const char* name;
  double q;
};
constexpr Percentile kPercentiles[] = {
    {"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}};

double NsToMs(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

IntervalSummary SummarizeInterval(double start_s, double length_s, const RunTotals& interval) {
  IntervalSummary s;
  s.start_s = start_s;
  s.length_s = length_s;
  s.calls = interval.calls;
  s.p50_ns = interval.latency_ns.ValueAtQuantile(0.5);
  s.p99_ns = interval.latency_ns.ValueAtQuantile(0.99);
  s.max_ns = interval.latency_ns.max();
  s.codes = interval.codes;
  return s;
}

std::vector<double> CurveQuantiles(uint64_t count) {
  std::vector<double> quantiles = {0.0};
  for (int k = 1; k <= 50 && std::pow(10.0, k / 10.0) <= static_cast<double>(count); ++k) {
    quantiles.push_back(1 - std::pow(10.0, -k / 10.0));
  }
  quantiles.push_back(1.0);
  return quantiles;
}

ServerStats Delta(const ServerStats& b, const ServerStats& a) {
  ServerStats d;
  d.requests = a.requests - b.requests;
  d.hits = a.hits - b.hits;
  d.misses = a.misses - b.misses;
  d.coalesced = a.coalesced - b.coalesced;
  d.loads_started = a.loads_started - b.loads_started;
  d.loads_succeeded = a.loads_succeeded - b.loads_succeeded;
  d.loads_failed = a.loads_failed - b.loads_failed;
  d.loads_cancelled = a.loads_cancelled - b.loads_cancelled;
  d.origin_fetches = a.origin_fetches - b.origin_fetches;
  d.hedges_sent = a.hedges_sent - b.hedges_sent;
  d.hedges_won = a.hedges_won - b.hedges_won;
  d.loads_inflight = a.loads_inflight;
  d.loads_queued = a.loads_queued;
  d.entries = a.entries;
  d.bytes = a.bytes;
  d.evictions = a.evictions - b.evictions;
  d.negative_hits = a.negative_hits - b.negative_hits;
  d.stale_served = a.stale_served - b.stale_served;
  d.refreshes_started = a.refreshes_started - b.refreshes_started;
  return d;
}

ServerSavings Savings(const ServerStats& d) {
  ServerSavings s;
  s.hit_ratio = Ratio(d.hits + d.negative_hits, d.requests);
  s.coalescing_ratio = Ratio(d.coalesced, d.misses);
  s.origin_fetches_per_request = Ratio(d.origin_fetches, d.requests);
  s.hedges_sent = d.hedges_sent;
  s.hedges_won = d.hedges_won;
  return s;
}

double Report::throughput() const {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  return seconds <= 0 ? 0.0 : static_cast<double>(totals.calls) / seconds;
}

std::string FormatLatency(uint64_t ns) {
  const double v = static_cast<double>(ns);
  if (ns < 1000) return absl::StrCat(ns, "ns");
  if (ns < 1000000) return absl::StrFormat("%.3gus", v / 1e3);
  if (ns < 1000000000) return absl::StrFormat("%.3gms", v / 1e6);
  return absl::StrFormat("%.3gs", v / 1e9);
}

std::string FormatText(const Report& r) {
  const RunTotals& t = r.totals;
  std::string out;
  absl::StrAppendFormat(&out, "target      %s  mode=%s", r.target, r.mode);
  if (!r.distribution.empty()) absl::StrAppend(&out, "  distribution=", r.distribution);
  if (r.mode == "herd") absl::StrAppend(&out, "  herd_size=", r.herd_size, "  waves=", r.waves);
  absl::StrAppendFormat(&out, "\nrequests    %d calls", t.calls);
  if (t.items != t.calls) absl::StrAppendFormat(&out, " (%d keys)", t.items);
  absl::StrAppendFormat(&out, " in %.3fs = %.1f calls/s\n", absl::ToDoubleSeconds(r.elapsed),
                        r.throughput());
  if (t.kinds[static_cast<int>(CallKind::kGet)] != t.calls) {  // a mix: say what it was
    absl::StrAppend(&out, "calls      ");
    for (int kind = 0; kind < kCallKindCount; ++kind) {
      absl::StrAppend(&out, " ", CallKindName(static_cast<CallKind>(kind)), "=", t.kinds[kind]);
    }
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, "status     ");
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (t.codes[code] > 0) absl::StrAppend(&out, " ", CodeName(code), "=", t.codes[code]);
  }
  absl::StrAppendFormat(&out, "\nerrors      %d (%.3f%% of keys; max allowed %.3f%%)\n", t.errors(),
                        100 * t.error_rate(), 100 * r.max_error_rate);
  absl::StrAppend(&out, "sources    ");
  for (int source = 1; source < kSourceCount; ++source) {
    absl::StrAppend(&out, " ", SourceName(static_cast<Source>(source)), "=", t.sources[source]);
  }
  absl::StrAppend(&out, "\nlatency    ");
  for (const Percentile& p : kPercentiles) {
    absl::StrAppend(&out, " ", p.name, "=", FormatLatency(t.latency_ns.ValueAtQuantile(p.q)));
  }
  absl::StrAppend(&out, " max=", FormatLatency(t.latency_ns.max()),
                  " mean=", FormatLatency(static_cast<uint64_t>(t.latency_ns.mean())), "\n");
  if (r.mode == "open") {
    absl::StrAppend(&out, "schedule    ", r.late_sends, " sends more than 1ms late, max lag ",
                    absl::FormatDuration(r.max_send_lag),
                    " (latency counts from the scheduled time)\n");
  }
  if (r.server_delta.has_value()) {
    const ServerStats& d = *r.server_delta;
    const ServerSavings s = Savings(d);
    absl::StrAppendFormat(&out,
                          "server      requests=%d hits=%d negative_hits=%d misses=%d "
                          "coalesced=%d loads_started=%d loads_failed=%d loads_cancelled=%d "
                          "origin_fetches=%d evictions=%d stale_served=%d "
                          "refreshes_started=%d\n",
                          d.requests, d.hits, d.negative_hits, d.misses, d.coalesced,
                          d.loads_started, d.loads_failed, d.loads_cancelled, d.origin_fetches,
                          d.evictions, d.stale_served, d.refreshes_started);
    absl::StrAppendFormat(&out,
                          "savings     hit_ratio=%.4f coalescing_ratio=%.4f "
                          "origin_fetches_per_request=%.4f hedges_sent=%d hedges_won=%d\n",
                          s.hit_ratio, s.coalescing_ratio, s.origin_fetches_per_request,
                          s.hedges_sent, s.hedges_won);
  } else {
    absl::StrAppend(&out, "server      stats unavailable: ", r.server_stats_error, "\n");
  }
  return out;
}

std::string FormatJson(const Report& r) {
  const RunTotals& t = r.totals;
  JsonObjectWriter codes;
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (t.codes[code] > 0) codes.Add(CodeName(code), t.codes[code]);
  }
  JsonObjectWriter kinds;
  for (int kind = 0; kind < kCallKindCount; ++kind) {
    kinds.Add(CallKindName(static_cast<CallKind>(kind)), t.kinds[kind]);
  }
  JsonObjectWriter sources;
  for (int source = 1; source < kSourceCount; ++source) {
    sources.Add(SourceName(static_cast<Source>(source)), t.sources[source]);
  }
  JsonObjectWriter latency;
  for (const Percentile& p : kPercentiles) {
    latency.Add(p.name, NsToMs(t.latency_ns.ValueAtQuantile(p.q)));
  }
  latency.Add("max", NsToMs(t.latency_ns.max()))
      .Add("min", NsToMs(t.latency_ns.min()))
      .Add("mean", t.latency_ns.mean() / 1e6);

  std::string curve = "[";
  for (const double q : CurveQuantiles(t.latency_ns.count())) {
    absl::StrAppendFormat(&curve, "%s[%.9g,%.6g]", curve.size() > 1 ? "," : "", q,
                          NsToMs(t.latency_ns.ValueAtQuantile(q)));
  }
  curve += "]";
  std::string timeline = "[";
  for (const IntervalSummary& s : r.timeline) {
    JsonObjectWriter interval_codes;
    for (int code = 0; code < kStatusCodeCount; ++code) {
      if (s.codes[code] > 0) interval_codes.Add(CodeName(code), s.codes[code]);
    }
    JsonObjectWriter interval;
    interval.Add("start_s", s.start_s)
        .Add("length_s", s.length_s)
        .Add("calls", s.calls)
        .Add("p50_ms", NsToMs(s.p50_ns))
        .Add("p99_ms", NsToMs(s.p99_ns))
        .Add("max_ms", NsToMs(s.max_ns))
        .AddRaw("codes", interval_codes.Build());
    absl::StrAppend(&timeline, timeline.size() > 1 ? "," : "", interval.Build());
  }
  timeline += "]";
  std::string settings = "[";
  for (const auto& [name, value] : r.settings) {
    absl::StrAppend(&settings, settings.size() > 1 ? "," : "", "[", support::JsonQuote(name), ",",
                    support::JsonQuote(value), "]");
  }
  settings += "]";

  JsonObjectWriter json;
  json.Add("schema", kJsonSchema)
      .Add("schema_version", kJsonSchemaVersion)
      .Add("target", r.target)
      .Add("mode", r.mode)
      .Add("distribution", r.distribution)
      .Add("elapsed_s", absl::ToDoubleSeconds(r.elapsed))
      .Add("requests", t.calls)
      .Add("keys", t.items)
      .AddRaw("calls_by_kind", kinds.Build())
      .Add("throughput_rps", r.throughput())
      .AddRaw("status_codes", codes.Build())
      .Add("errors", t.errors())
      .Add("error_rate", t.error_rate())
      .Add("max_error_rate", r.max_error_rate)
      .Add("error_rate_exceeded", r.error_rate_exceeded())
      .AddRaw("sources", sources.Build())
      .AddRaw("latency_ms", latency.Build());
  if (r.mode == "open") {
    json.Add("intended_rate_rps", r.intended_rate)
        .Add("late_sends", r.late_sends)
        .Add("max_send_lag_ms", absl::ToDoubleMilliseconds(r.max_send_lag));
  }
  if (r.mode == "herd") json.Add("herd_size", r.herd_size).Add("waves", r.waves);
  if (r.server_delta.has_value()) {
    const ServerStats& d = *r.server_delta;
    const ServerSavings s = Savings(d);
    JsonObjectWriter server;
    server.Add("requests", d.requests)
        .Add("hits", d.hits)
        .Add("misses", d.misses)
        .Add("coalesced", d.coalesced)
        .Add("loads_started", d.loads_started)
        .Add("loads_succeeded", d.loads_succeeded)
        .Add("loads_failed", d.loads_failed)
        .Add("loads_cancelled", d.loads_cancelled)
        .Add("origin_fetches", d.origin_fetches)
        .Add("hedges_sent", d.hedges_sent)
        .Add("hedges_won", d.hedges_won)
        .Add("loads_inflight", d.loads_inflight)
        .Add("loads_queued", d.loads_queued)
        .Add("entries", d.entries)
        .Add("bytes", d.bytes)
        .Add("evictions", d.evictions)
        .Add("negative_hits", d.negative_hits)
        .Add("stale_served", d.stale_served)
        .Add("refreshes_started", d.refreshes_started)
        .Add("hit_ratio", s.hit_ratio)
        .Add("coalescing_ratio", s.coalescing_ratio)
        .Add("origin_fetches_per_request", s.origin_fetches_per_request);
    json.AddRaw("server", server.Build());
  } else {
    json.Add("server_stats_error", r.server_stats_error);
  }
  // Last, for --compare and the HTML report: the percentile curve as [quantile, ms] pairs, the
  // per-second timeline and the settings as [flag, value] pairs (arrays keep their order).
  json.AddRaw("latency_curve", curve).AddRaw("timeline", timeline).AddRaw("settings", settings);
  return json.Build() + "\n";
}

std::string FormatProgress(absl::Duration elapsed, absl::Duration interval, const RunTotals& i,
                           const RunTotals& run, int64_t inflight) {
  const double seconds = absl::ToDoubleSeconds(interval);
  const double rate = seconds <= 0 ? 0 : static_cast<double>(i.calls) / seconds;
  return absl::StrFormat(
      "[%5.1fs] %8.0f calls/s  total=%d  errors=%d  p50=%s  p99=%s  max=%s  "
      "inflight=%d",
      absl::ToDoubleSeconds(elapsed), rate, run.calls, run.errors(),
      FormatLatency(i.latency_ns.ValueAtQuantile(0.5)),
      FormatLatency(i.latency_ns.ValueAtQuantile(0.99)), FormatLatency(i.latency_ns.max()),
      inflight);
}

}  // namespace flightcache::loadgen
