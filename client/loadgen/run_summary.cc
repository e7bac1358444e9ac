#include "client/loadgen/run_summary.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/loadgen/recorder.h"
#include "client/loadgen/report.h"
#include "flightcache/support/file_util.h"

namespace flightcache::loadgen {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// A JSON report is a few MB at most, even for an hour-long run's timeline.
constexpr size_t kMaxReportBytes = size_t{64} << 20;

// Field readers over a parsed object: each error names the field. Absent optional fields read
// as their default.
class Fields {
 public:
  explicit Fields(const Struct& object, std::string where = "")
      : object_(object), where_(std::move(where)) {}

  const Value* Find(const std::string& name) const {
    auto it = object_.fields().find(name);
    return it == object_.fields().end() ? nullptr : &it->second;
  }
  bool Has(const std::string& name) const { return Find(name) != nullptr; }

  absl::Status Number(const std::string& name, double& out, bool required = true) const {
    const Value* v = Find(name);
    if (v == nullptr) return required ? Missing(name) : absl::OkStatus();
    if (v->kind_case() != Value::kNumberValue) return WrongType(name, "a number");
    out = v->number_value();
    return absl::OkStatus();
  }
  absl::Status String(const std::string& name, std::string& out, bool required = true) const {
    const Value* v = Find(name);
    if (v == nullptr) return required ? Missing(name) : absl::OkStatus();
    if (v->kind_case() != Value::kStringValue) return WrongType(name, "a string");
    out = v->string_value();
    return absl::OkStatus();
  }
  absl::StatusOr<const Struct*> Object(const std::string& name) const {
    const Value* v = Find(name);
    if (v == nullptr) return Missing(name);
    if (v->kind_case() != Value::kStructValue) return WrongType(name, "an object");
    return &v->struct_value();
  }
  absl::StatusOr<const google::protobuf::ListValue*> List(const std::string& name) const {
    const Value* v = Find(name);
    if (v == nullptr) return Missing(name);
    if (v->kind_case() != Value::kListValue) return WrongType(name, "an array");
    return &v->list_value();
  }
  std::string Path(const std::string& name) const { return where_ + name; }

 private:
  absl::Status Missing(const std::string& name) const {
    return absl::InvalidArgumentError(absl::StrCat("field \"", Path(name), "\" is missing"));
  }
  absl::Status WrongType(const std::string& name, absl::string_view type) const {
    return absl::InvalidArgumentError(absl::StrCat("field \"", Path(name), "\" is not ", type));
  }

  const Struct& object_;
  std::string where_;
};

// Status codes in code order (OK, CANCELLED, ...), whatever order the object has.
std::vector<std::pair<std::string, double>> OrderedCodes(const Struct& codes) {
  std::vector<std::pair<std::string, double>> out;
  for (int code = 0; code < kStatusCodeCount; ++code) {
    const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    auto it = codes.fields().find(name);
    if (it != codes.fields().end() && it->second.kind_case() == Value::kNumberValue) {
      out.emplace_back(name, it->second.number_value());
    }
  }
  return out;
}

// The items of list `name`, each an [a, b] pair of two values of `kind`.
absl::StatusOr<std::vector<std::pair<const Value*, const Value*>>> Pairs(const Fields& top,
                                                                         const std::string& name,
                                                                         Value::KindCase kind) {
  absl::StatusOr<const google::protobuf::ListValue*> list = top.List(name);
  if (!list.ok()) return list.status();
  std::vector<std::pair<const Value*, const Value*>> pairs;
  for (const Value& item : (*list)->values()) {
    if (item.kind_case() != Value::kListValue || item.list_value().values_size() != 2 ||
        item.list_value().values(0).kind_case() != kind ||
        item.list_value().values(1).kind_case() != kind) {
      return absl::InvalidArgumentError(
          absl::StrCat("field \"", name, "\" holds something else than a pair of ",
                       kind == Value::kNumberValue ? "numbers" : "strings"));
    }
    pairs.emplace_back(&item.list_value().values(0), &item.list_value().values(1));
  }
  return pairs;
}

absl::Status ReadCurve(const Fields& top, RunSummary& run) {
  auto pairs = Pairs(top, "latency_curve", Value::kNumberValue);
  if (!pairs.ok()) return pairs.status();
  for (const auto& [q, ms] : *pairs) {
    run.latency_curve.emplace_back(q->number_value(), ms->number_value());
  }
  return absl::OkStatus();
}

absl::Status ReadTimeline(const Fields& top, RunSummary& run) {
  absl::StatusOr<const google::protobuf::ListValue*> timeline = top.List("timeline");
  if (!timeline.ok()) return timeline.status();
  for (int i = 0; i < (*timeline)->values_size(); ++i) {
    const Value& item = (*timeline)->values(i);
    if (item.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError("\"timeline\" holds a non-object");
    }
    const Fields second(item.struct_value(), absl::StrCat("timeline[", i, "]."));
    RunSecond s;
    for (const auto& [name, out] : {std::pair<const char*, double*>{"start_s", &s.start_s},
                                    {"length_s", &s.length_s},
                                    {"calls", &s.calls},
                                    {"p50_ms", &s.p50_ms},
                                    {"p99_ms", &s.p99_ms},
                                    {"max_ms", &s.max_ms}}) {
      if (absl::Status st = second.Number(name, *out); !st.ok()) return st;
    }
    absl::StatusOr<const Struct*> codes = second.Object("codes");
    if (!codes.ok()) return codes.status();
    s.codes = OrderedCodes(**codes);
    run.timeline.push_back(std::move(s));
  }
  return absl::OkStatus();
}

absl::Status ReadSettings(const Fields& top, RunSummary& run) {
  auto pairs = Pairs(top, "settings", Value::kStringValue);
  if (!pairs.ok()) return pairs.status();
  for (const auto& [name, value] : *pairs) {
    run.settings.emplace_back(name->string_value(), value->string_value());
  }
  return absl::OkStatus();
}

absl::Status ReadServer(const Fields& top, RunSummary& run) {
  if (!top.Has("server")) {
    return top.String("server_stats_error", run.server_stats_error, /*required=*/false);
  }
  absl::StatusOr<const Struct*> object = top.Object("server");
  if (!object.ok()) return object.status();
  const Fields server(**object, "server.");
  ServerFigures s;
  for (const auto& [name, out] : {std::pair<const char*, double*>{"requests", &s.requests},
                                  {"hit_ratio", &s.hit_ratio},
                                  {"coalescing_ratio", &s.coalescing_ratio},
                                  {"origin_fetches_per_request", &s.origin_fetches_per_request},
                                  {"origin_fetches", &s.origin_fetches},
                                  {"hedges_sent", &s.hedges_sent},
                                  {"hedges_won", &s.hedges_won},
                                  {"stale_served", &s.stale_served}}) {
    if (absl::Status st = server.Number(name, *out); !st.ok()) return st;
  }
  run.server = s;
  return absl::OkStatus();
}

absl::Status ReadFigures(const Fields& top, RunSummary& run) {
  for (const auto& [name, out] : {std::pair<const char*, std::string*>{"target", &run.target},
                                  {"mode", &run.mode},
                                  {"distribution", &run.distribution}}) {
    if (absl::Status s = top.String(name, *out); !s.ok()) return s;
  }
  for (const auto& [name, out] : {std::pair<const char*, double*>{"elapsed_s", &run.elapsed_s},
                                  {"requests", &run.calls},
                                  {"keys", &run.keys},
                                  {"throughput_rps", &run.throughput_rps},
                                  {"errors", &run.errors},
                                  {"error_rate", &run.error_rate}}) {
    if (absl::Status s = top.Number(name, *out); !s.ok()) return s;
  }
  if (absl::Status s = top.Number("intended_rate_rps", run.intended_rate_rps, false); !s.ok()) {
    return s;
  }
  absl::StatusOr<const Struct*> codes = top.Object("status_codes");
  if (!codes.ok()) return codes.status();
  run.status_codes = OrderedCodes(**codes);
  absl::StatusOr<const Struct*> latency_object = top.Object("latency_ms");
  if (!latency_object.ok()) return latency_object.status();
  const Fields latency(**latency_object, "latency_ms.");
  for (const auto& [name, out] : {std::pair<const char*, double*>{"p50", &run.p50_ms},
                                  {"p90", &run.p90_ms},
                                  {"p99", &run.p99_ms},
                                  {"p99.9", &run.p999_ms},
                                  {"max", &run.max_ms},
                                  {"mean", &run.mean_ms}}) {
    if (absl::Status s = latency.Number(name, *out); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RunSummary> ParseRunSummary(absl::string_view json) {
  Value root;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &root).ok() ||
      root.kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError("not a flightcache-loadgen JSON report (not a JSON object)");
  }
  const Fields top(root.struct_value());
  std::string schema;
  if (!top.String("schema", schema).ok() || schema != kJsonSchema) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a flightcache-loadgen JSON report (no \"schema\":\"", kJsonSchema, "\")"));
  }
  double version = 0;
  if (absl::Status s = top.Number("schema_version", version); !s.ok()) return s;
  if (version != kJsonSchemaVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schema version ", version, ", but this loadgen reads version ", kJsonSchemaVersion));
  }
  RunSummary run;
  for (absl::Status (*read)(const Fields&, RunSummary&) :
       {ReadFigures, ReadCurve, ReadTimeline, ReadSettings, ReadServer}) {
    if (absl::Status s = read(top, run); !s.ok()) return s;
  }
  if (run.calls <= 0) return absl::InvalidArgumentError("the run has no calls");
  return run;
}

absl::StatusOr<RunSummary> ReadRunSummaryFile(const std::string& path) {
  absl::StatusOr<std::string> text = support::ReadBoundedFile("JSON report", path, kMaxReportBytes);
  if (!text.ok()) return text.status();
  absl::StatusOr<RunSummary> run = ParseRunSummary(*text);
  if (!run.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", run.status().message()));
  }
  return run;
}

}  // namespace flightcache::loadgen
