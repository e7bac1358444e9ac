#include "server/sim_origin.h"

#include <cmath>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace flightcache {
namespace {

constexpr int64_t kMaxSimValueBytes = int64_t{1} << 30;
constexpr absl::string_view kValuePrefix = "sim-value v=";

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

absl::Status SimOriginOptions::Validate() const {
  if (latency < absl::ZeroDuration() || latency == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("sim origin latency_ms must be a finite number >= 0");
  }
  if (jitter < absl::ZeroDuration() || jitter == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("sim origin jitter_ms must be a finite number >= 0");
  }
  if (value_bytes < 0 || value_bytes > kMaxSimValueBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("sim origin value_bytes must be in [0, ", kMaxSimValueBytes, "]"));
  }
  if (!(error_rate >= 0 && error_rate <= 1)) {
    return absl::InvalidArgumentError("sim origin error_rate must be in [0, 1]");
  }
  if (!(not_found_rate >= 0 && not_found_rate <= 1)) {
    return absl::InvalidArgumentError("sim origin not_found_rate must be in [0, 1]");
  }
  if (ttl < absl::ZeroDuration() || ttl == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("sim origin ttl_ms must be a finite number >= 0");
  }
  return absl::OkStatus();
}

std::string SimOriginOptions::ToUrl() const {
  std::string url =
      absl::StrCat("sim://?latency_ms=", absl::ToDoubleMilliseconds(latency),
                   "&jitter_ms=", absl::ToDoubleMilliseconds(jitter), "&value_bytes=", value_bytes,
                   "&error_rate=", error_rate, "&not_found_rate=", not_found_rate);
  if (ttl > absl::ZeroDuration()) absl::StrAppend(&url, "&ttl_ms=", absl::ToInt64Milliseconds(ttl));
  if (seed.has_value()) absl::StrAppend(&url, "&seed=", *seed);
  return url;
}

absl::StatusOr<SimOriginOptions> ParseSimOriginQuery(absl::string_view query) {
  SimOriginOptions options;
  absl::flat_hash_set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    const absl::string_view name = kv.first;
    const absl::string_view text = kv.second;
    if (part.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("sim origin parameter '", part, "' has no value (want NAME=VALUE)"));
    }
    if (!seen.insert(std::string(name)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("sim origin parameter ", name, " is given twice"));
    }
    if (name == "latency_ms") {
      absl::StatusOr<double> v = ParseNonNegativeDouble(name, text);
      if (!v.ok()) return v.status();
      options.latency = absl::Microseconds(std::llround(*v * 1000));
    } else if (name == "jitter_ms") {
      absl::StatusOr<double> v = ParseNonNegativeDouble(name, text);
      if (!v.ok()) return v.status();
      options.jitter = absl::Microseconds(std::llround(*v * 1000));
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
          "' (known: latency_ms, jitter_ms, value_bytes, error_rate, not_found_rate, ttl_ms, "
          "seed)"));
    }
  }
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return options;
}

// One fetch waiting for its timer. Whoever flips `answered` first — the timer or the stop
// callback — takes `done` and calls it; the other does nothing.
struct SimOrigin::PendingFetch {
  PendingFetch(std::string k, Outcome o, FetchCallback d)
      : key(std::move(k)), outcome(o), done(std::move(d)) {}

  // Runs on the thread that requests stop. It holds the fetch only weakly (the fetch owns this
  // callback), and locks it for the duration of the call so the fetch cannot vanish under it.
  struct OnCancel {
    std::weak_ptr<PendingFetch> fetch;
    SimOrigin* origin;
    void operator()() const {
      std::shared_ptr<PendingFetch> f = fetch.lock();
      if (f == nullptr || f->answered.exchange(true, std::memory_order_acq_rel)) return;
      origin->timers_.Cancel(f->timer.load(std::memory_order_acquire));
      origin->cancelled_.fetch_add(1, std::memory_order_relaxed);
      FetchCallback done = std::move(f->done);
      done(absl::CancelledError("simulated origin fetch cancelled"));
    }
  };

  const std::string key;
  const Outcome outcome;
  // acq_rel: the winner's exchange orders its use of `done` after the loser's (absent) use.
  std::atomic<bool> answered{false};
  FetchCallback done;  // taken by whoever set `answered`
  std::atomic<TimerId> timer{kNoTimer};
  // Emplaced once, by Fetch(), before Fetch() returns; destroyed with the fetch.
  std::optional<std::stop_callback<OnCancel>> on_cancel;
};

SimOrigin::SimOrigin(SimOriginOptions options, TimerQueue& timers)
    : options_(std::move(options)),
      timers_(timers),
      rng_(options_.seed.has_value() ? *options_.seed : std::random_device{}()),
      versions_(std::make_unique<std::array<std::atomic<uint64_t>, kVersionSlots>>()) {
  for (auto& v : *versions_) v.store(0, std::memory_order_relaxed);
}

SimOrigin::~SimOrigin() = default;

std::string SimOrigin::Describe() const { return options_.ToUrl(); }

std::pair<absl::Duration, SimOrigin::Outcome> SimOrigin::Draw() {
  absl::MutexLock lock(&rng_mu_);
  absl::Duration delay = options_.latency;
  if (options_.jitter > absl::ZeroDuration()) {
    std::uniform_real_distribution<double> jitter(-1.0, 1.0);
    delay += jitter(rng_) * options_.jitter;
  }
  if (delay < absl::ZeroDuration()) delay = absl::ZeroDuration();
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  Outcome outcome = Outcome::kValue;
  if (options_.error_rate > 0 && coin(rng_) < options_.error_rate) {
    outcome = Outcome::kError;
  } else if (options_.not_found_rate > 0 && coin(rng_) < options_.not_found_rate) {
    outcome = Outcome::kNotFound;
  }
  return {delay, outcome};
}

uint64_t SimOrigin::NextVersion(absl::string_view key) {
  const size_t slot = absl::Hash<absl::string_view>()(key) % kVersionSlots;
  return (*versions_)[slot].fetch_add(1, std::memory_order_relaxed) + 1;
}

void SimOrigin::Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) {
  fetches_.fetch_add(1, std::memory_order_relaxed);
  if (cancel.stop_requested()) {
    cancelled_.fetch_add(1, std::memory_order_relaxed);
    done(absl::CancelledError("simulated origin fetch cancelled"));
    return;
  }
  auto [delay, outcome] = Draw();
  auto fetch = std::make_shared<PendingFetch>(request.key, outcome, std::move(done));
  // The timer owns the fetch until it runs or is cancelled; the stop callback only borrows it.
  fetch->timer.store(timers_.RunAfter(delay, [this, fetch] { Answer(*fetch); }),
                     std::memory_order_release);
  // Registered after the timer so the callback always sees the timer's id. If the token fired in
  // between, the callback runs right here and answers CANCELLED.
  fetch->on_cancel.emplace(std::move(cancel), PendingFetch::OnCancel{fetch, this});
}

void SimOrigin::Answer(PendingFetch& fetch) {
  if (fetch.answered.exchange(true, std::memory_order_acq_rel)) return;
  FetchCallback done = std::move(fetch.done);
  switch (fetch.outcome) {
    case Outcome::kError:
      done(absl::UnavailableError("simulated origin error (error_rate)"));
      return;
    case Outcome::kNotFound:
      done(absl::NotFoundError("simulated origin: key not found (not_found_rate)"));
      return;
    case Outcome::kValue:
      done(FetchResult{MakeValue(fetch.key, NextVersion(fetch.key), options_.value_bytes),
                       options_.ttl});
      return;
  }
}

std::string SimOrigin::MakeValue(absl::string_view key, uint64_t version, int64_t value_bytes) {
  std::string value = absl::StrCat(kValuePrefix, version, " key=", key.size(), ":", key, "\n");
  if (static_cast<int64_t>(value.size()) < value_bytes) {
    value.resize(static_cast<size_t>(value_bytes), '.');
  }
  return value;
}

std::optional<SimValueInfo> SimOrigin::ParseValue(absl::string_view value) {
  if (!absl::ConsumePrefix(&value, kValuePrefix)) return std::nullopt;
  const size_t space = value.find(' ');
  if (space == absl::string_view::npos) return std::nullopt;
  SimValueInfo info;
  if (!absl::SimpleAtoi(value.substr(0, space), &info.version)) return std::nullopt;
  value.remove_prefix(space + 1);
  if (!absl::ConsumePrefix(&value, "key=")) return std::nullopt;
  const size_t colon = value.find(':');
  size_t key_size = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(value.substr(0, colon), &key_size)) {
    return std::nullopt;
  }
  value.remove_prefix(colon + 1);
  if (value.size() < key_size + 1 || value[key_size] != '\n') return std::nullopt;
  info.key = std::string(value.substr(0, key_size));
  return info;
}

}  // namespace flightcache
