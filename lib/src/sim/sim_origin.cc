#include "flightcache/sim/sim_origin.h"

#include <atomic>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flightcache::sim {
namespace {

constexpr int64_t kVersionSlots = int64_t{1} << 16;

absl::StatusOr<double> ParseNonNegativeDouble(absl::string_view name, absl::string_view text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !std::isfinite(v) || v < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim origin parameter ", name, "='", text, "': want a non-negative number"));
  }
  return v;
}

absl::StatusOr<double> ParseRate(absl::string_view name, absl::string_view text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !(v >= 0 && v <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim origin parameter ", name, "='", text, "': want a probability in [0, 1]"));
  }
  return v;
}

absl::StatusOr<int64_t> ParseNonNegativeInt(absl::string_view name, absl::string_view text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim origin parameter ", name, "='", text, "': want a non-negative integer"));
  }
  return v;
}

}  // namespace

OriginModelOptions SimOriginDefaults() {
  OriginModelOptions options;
  options.latency = LatencyDistribution::Jitter(absl::Milliseconds(20), absl::Milliseconds(5));
  options.value_bytes = 128;
  options.version_slots = kVersionSlots;
  return options;
}

std::string SimOriginUrl(const OriginModelOptions& options) {
  std::string url = "sim://?";
  const LatencyDistribution& latency = options.latency;
  switch (latency.kind) {
    case LatencyDistribution::Kind::kFixed:
    case LatencyDistribution::Kind::kJitter:
      absl::StrAppend(&url, "latency_ms=", absl::ToDoubleMilliseconds(latency.a),
                      "&jitter_ms=", absl::ToDoubleMilliseconds(latency.b));
      break;
    default:
      absl::StrAppend(&url, "latency=", latency.ToString());
      break;
  }
  absl::StrAppend(&url, "&value_bytes=", options.value_bytes, "&error_rate=", options.error_rate,
                  "&not_found_rate=", options.not_found_rate);
  if (options.ttl > absl::ZeroDuration()) {
    absl::StrAppend(&url, "&ttl_ms=", absl::ToInt64Milliseconds(options.ttl));
  }
  if (options.seed.has_value()) absl::StrAppend(&url, "&seed=", *options.seed);
  return url;
}

absl::StatusOr<OriginModelOptions> ParseSimOriginQuery(absl::string_view query) {
  OriginModelOptions options = SimOriginDefaults();
  absl::Duration latency = options.latency.a;
  absl::Duration jitter = options.latency.b;
  std::optional<LatencyDistribution> spec;  // latency=SPEC
  absl::flat_hash_set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    const absl::string_view name = kv.first;
    const absl::string_view text = kv.second;
    if (!absl::StrContains(part, '=')) {
      return absl::InvalidArgumentError(
          absl::StrCat("sim origin parameter '", part, "' has no value (want NAME=VALUE)"));
    }
    if (!seen.insert(std::string(name)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sim origin parameter ", name, " is given twice"));
    }
    if (name == "latency_ms" || name == "jitter_ms") {
      absl::StatusOr<double> v = ParseNonNegativeDouble(name, text);
      if (!v.ok()) return v.status();
      (name == "latency_ms" ? latency : jitter) = absl::Microseconds(std::llround(*v * 1000));
    } else if (name == "latency") {
      absl::StatusOr<LatencyDistribution> v = LatencyDistribution::Parse(text);
      if (!v.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("sim origin parameter latency: ", v.status().message()));
      }
      spec = *v;
    } else if (name == "value_bytes") {
      absl::StatusOr<int64_t> v = ParseNonNegativeInt(name, text);
      if (!v.ok()) return v.status();
      options.value_bytes = *v;
    } else if (name == "error_rate") {
      absl::StatusOr<double> v = ParseRate(name, text);
      if (!v.ok()) return v.status();
      options.error_rate = *v;
    } else if (name == "not_found_rate") {
      absl::StatusOr<double> v = ParseRate(name, text);
      if (!v.ok()) return v.status();
      options.not_found_rate = *v;
    } else if (name == "ttl_ms") {
      absl::StatusOr<int64_t> v = ParseNonNegativeInt(name, text);
      if (!v.ok()) return v.status();
      options.ttl = absl::Milliseconds(*v);
    } else if (name == "seed") {
      uint64_t v = 0;
      if (!absl::SimpleAtoi(text, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("sim origin parameter seed='", text, "': want an unsigned integer"));
      }
      options.seed = v;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown sim origin parameter '", name,
          "' (known: latency_ms, jitter_ms, latency, value_bytes, error_rate, not_found_rate, "
          "ttl_ms, seed)"));
    }
  }
  if (spec.has_value()) {
    if (seen.contains("latency_ms") || seen.contains("jitter_ms")) {
      return absl::InvalidArgumentError(
          "sim origin parameter latency= replaces latency_ms and jitter_ms: give one or the other");
    }
    options.latency = *spec;
  } else {
    options.latency = LatencyDistribution::Jitter(latency, jitter);
  }
  if (absl::Status s = options.Validate(
          [](absl::string_view option) { return absl::StrCat("sim origin ", option); });
      !s.ok()) {
    return s;
  }
  return options;
}

// One fetch waiting for its timer. Whoever flips `answered` first — the timer or the stop
// callback — ends the fetch in the model, takes `done` and calls it; the other does nothing.
struct SimOrigin::PendingFetch {
  PendingFetch(std::string k, FetchPlan p, FetchCallback d)
      : key(std::move(k)), plan(p), done(std::move(d)) {}

  // Whether this caller won the right to answer.
  bool Claim() { return !answered.exchange(true, std::memory_order_acq_rel); }
  // REQUIRES: Claim() returned true.
  void Answer(OriginModel& model, FetchEnd how) {
    FetchCallback callback = std::move(done);
    callback(model.EndFetch(key, plan, how));
  }

  // Runs on the thread that requests stop. It holds the fetch only weakly (the fetch owns this
  // callback), and locks it for the duration of the call so the fetch cannot vanish under it.
  struct OnCancel {
    std::weak_ptr<PendingFetch> fetch;
    SimOrigin* origin;
    void operator()() const {
      std::shared_ptr<PendingFetch> f = fetch.lock();
      if (f == nullptr || !f->Claim()) return;
      origin->timers_.Cancel(f->timer.load(std::memory_order_acquire));
      f->Answer(origin->model_, FetchEnd::kCancelled);
    }
  };

  const std::string key;
  const FetchPlan plan;
  // acq_rel: the winner's exchange orders its use of `done` after the loser's (absent) use.
  std::atomic<bool> answered{false};
  FetchCallback done;  // taken by whoever set `answered`
  std::atomic<TimerId> timer{kNoTimer};
  // Emplaced once, by Fetch(), before Fetch() returns; destroyed with the fetch.
  std::optional<std::stop_callback<OnCancel>> on_cancel;
};

SimOrigin::SimOrigin(const OriginModelOptions& options, TimerQueue& timers)
    : model_(options), timers_(timers) {}

SimOrigin::~SimOrigin() = default;

std::string SimOrigin::Describe() const { return SimOriginUrl(model_.options()); }

void SimOrigin::Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) {
  const FetchPlan plan = model_.BeginFetch(request.key, request.attempt);
  if (plan.outcome == FetchOutcome::kRejected) {
    done(OriginModel::RejectedStatus());
    return;
  }
  if (cancel.stop_requested()) {
    done(model_.EndFetch(request.key, plan, FetchEnd::kCancelled));
    return;
  }
  auto fetch = std::make_shared<PendingFetch>(request.key, plan, std::move(done));
  // The timer owns the fetch until it runs or is cancelled; the stop callback only borrows it.
  fetch->timer.store(timers_.RunAfter(plan.latency,
                                      [this, fetch] {
                                        if (fetch->Claim()) {
                                          fetch->Answer(model_, FetchEnd::kAnswered);
                                        }
                                      }),
                     std::memory_order_release);
  // Registered after the timer so the callback always sees the timer's id. If the token fired in
  // between, the callback runs right here and answers CANCELLED.
  fetch->on_cancel.emplace(std::move(cancel), PendingFetch::OnCancel{fetch, this});
}

}  // namespace flightcache::sim
