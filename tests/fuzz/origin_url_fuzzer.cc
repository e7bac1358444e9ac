// Fuzz target: --origin URLs (server/origin_factory.cc: grpc(s)://HOST:PORT and sim://?...,
// lib/src/sim/sim_origin.cc) and the simulated origin's value format (lib/src/sim/origin_model.cc).
//
// Input: the URL, all of it.
//
// Checks:
// - a rejected URL gives INVALID_ARGUMENT with a message;
// - an accepted grpc:// URL has a HOST:PORT target from which a GrpcOrigin (a gRPC channel; it
//   connects lazily, so nothing goes on the network) is created;
// - an accepted sim:// URL gives options that validate, that CreateOrigin accepts, and whose
//   canonical URL (SimOriginUrl(), what the server logs) parses again to the same value size,
//   TTL and seed; a SimOrigin built from them answers a fetch (on a fake clock) with a value that
//   DecodeSimValue reads back as the fetched key;
// - DecodeSimValue never crashes on the input bytes, and reads back what EncodeSimValue wrote for
//   a key taken from them.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "flightcache/sim/origin_model.h"
#include "flightcache/sim/sim_origin.h"
#include "server/grpc_origin.h"
#include "server/origin_factory.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

// Larger sim values are valid but would only make each run slow.
constexpr int64_t kMaxFetchedValueBytes = 1 << 20;

void CheckGrpc(absl::string_view url, const OriginSpec& spec) {
  FUZZ_CHECK(!spec.grpc_targets.empty()) << "no target in '" << url << "'";
  FUZZ_CHECK(absl::EndsWith(url, spec.grpc_targets.back()))
      << "last target '" << spec.grpc_targets.back() << "' of '" << url << "'";
  for (const std::string& target : spec.grpc_targets) {
    FUZZ_CHECK(!target.empty() && absl::StrContains(target, ':'))
        << "no port in '" << target << "' of '" << url << "'";
    FUZZ_CHECK(!absl::StrContains(target, ',')) << "a list left in '" << target << "'";
    absl::StatusOr<std::unique_ptr<GrpcOrigin>> origin =
        GrpcOrigin::Create(target, GrpcOriginOptions{});
    FUZZ_CHECK(origin.ok()) << "accepted grpc origin '" << url
                            << "' cannot be created: " << origin.status();
  }
}

void CheckSimFetch(const sim::OriginModelOptions& options) {
  testing::FakeTimerQueue timers;
  sim::SimOrigin origin(options, timers);
  std::optional<absl::StatusOr<FetchResult>> result;
  origin.Fetch(FetchRequest{.key = "fuzz-key"}, std::stop_token(),
               [&](absl::StatusOr<FetchResult> r) { result = std::move(r); });
  timers.Advance(options.latency.Max());
  FUZZ_CHECK(result.has_value()) << "no answer after the longest latency";
  if (!result->ok()) {
    FUZZ_CHECK(absl::IsUnavailable(result->status()) || absl::IsNotFound(result->status()))
        << result->status();
    return;
  }
  FUZZ_CHECK(static_cast<int64_t>((*result)->value.size()) >= options.value_bytes);
  const std::optional<sim::SimValueInfo> info = sim::DecodeSimValue((*result)->value);
  FUZZ_CHECK(info.has_value() && info->key == "fuzz-key") << "value does not name its key";
  FUZZ_CHECK((*result)->ttl == options.ttl);
}

void CheckSim(absl::string_view url, const OriginSpec& spec) {
  FUZZ_CHECK(spec.sim.Validate().ok()) << spec.sim.Validate();
  testing::FakeTimerQueue timers;
  absl::StatusOr<std::unique_ptr<Origin>> origin = CreateOrigin(spec, timers, GrpcOriginOptions{});
  FUZZ_CHECK(origin.ok()) << "accepted sim origin '" << url
                          << "' cannot be created: " << origin.status();
  const std::string canonical = sim::SimOriginUrl(spec.sim);
  const absl::StatusOr<OriginSpec> again = ParseOriginUrl(canonical);
  FUZZ_CHECK(again.ok()) << "'" << url << "' logs as '" << canonical
                         << "', which does not parse: " << again.status();
  FUZZ_CHECK(again->kind == OriginSpec::Kind::kSim);
  FUZZ_CHECK(again->sim.value_bytes == spec.sim.value_bytes) << canonical;
  FUZZ_CHECK(again->sim.ttl == spec.sim.ttl) << canonical;
  FUZZ_CHECK(again->sim.seed == spec.sim.seed) << canonical;
  if (spec.sim.value_bytes <= kMaxFetchedValueBytes) CheckSimFetch(spec.sim);
}

void CheckSimValueFormat(const std::string& bytes) {
  (void)sim::DecodeSimValue(bytes);
  const std::string key = bytes.substr(0, 16);
  const uint64_t version = bytes.size() * 7919;
  const std::string value = sim::EncodeSimValue(key, version, static_cast<int64_t>(bytes.size()));
  const std::optional<sim::SimValueInfo> info = sim::DecodeSimValue(value);
  FUZZ_CHECK(info.has_value() && info->key == key && info->version == version)
      << "EncodeSimValue/DecodeSimValue do not round-trip";
}

}  // namespace
}  // namespace flightcache

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flightcache;
  const std::string url(reinterpret_cast<const char*>(data), size);
  CheckSimValueFormat(url);
  const absl::StatusOr<OriginSpec> spec = ParseOriginUrl(url);
  if (!spec.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(spec.status())) << spec.status();
    FUZZ_CHECK(!spec.status().message().empty());
    return 0;
  }
  if (spec->kind == OriginSpec::Kind::kGrpc) {
    CheckGrpc(url, *spec);
  } else {
    CheckSim(url, *spec);
  }
  return 0;
}
