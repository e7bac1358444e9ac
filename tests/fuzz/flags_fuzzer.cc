// Fuzz target: flightcache-server's flags and FLIGHTCACHE_* environment (server/flags.cc,
// server/config.cc) -> a ServerConfig that works, or one clear error line.
//
// Input: lines. A line "FLIGHTCACHE_NAME=VALUE" is an environment variable, any other line one
// command-line argument (at most 64 of them).
//
// Checks:
// - a rejected command line or config gives one non-empty line that starts with the flag at fault
//   ("--ttl: ...") or says what is wrong with the arguments ("unexpected argument ...");
// - a config Validate() accepts can be started: its origin URL parses and a sim:// origin can be
//   created from it, the gRPC message limits are positive and leave room for a key and a value,
//   and the core runs with its options: a load stores a value that the next Get hits with a
//   positive TTL left, and a load whose origin never answers ends at --load-timeout.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "flightcache/flight_cache.h"
#include "server/config.h"
#include "server/flags.h"
#include "server/origin_factory.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

constexpr size_t kMaxArgs = 64;

bool IsOneLine(absl::string_view message) {
  return !message.empty() && !absl::StrContains(message, '\n');
}

// An origin that answers key "h" at once with the value "v" and never answers any other key
// (until cancelled). One-byte keys and values: --max-key-bytes and --max-value-bytes are >= 1.
class InlineOrigin final : public Origin {
 public:
  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    if (request.key == "h") {
      done(FetchResult{.value = "v"});
      return;
    }
    pending_.push_back(std::make_unique<Pending>(std::move(cancel), std::move(done)));
  }
  std::string Describe() const override { return "inline://"; }

 private:
  struct Pending {
    Pending(std::stop_token cancel, FetchCallback d)
        : done(std::move(d)), on_cancel(std::move(cancel), [this] {
            if (done) std::exchange(done, nullptr)(absl::CancelledError("cancelled"));
          }) {}
    FetchCallback done;
    std::stop_callback<std::function<void()>> on_cancel;
  };
  std::vector<std::unique_ptr<Pending>> pending_;
};

// Runs the core with the accepted options on a fake clock.
void RunCore(const FlightCacheOptions& options) {
  testing::FakeTimerQueue timers;
  InlineOrigin origin;
  FlightCache cache(options, origin, timers);
  std::optional<GetResult> loaded, hit, timed_out;
  cache.Get("h", [&](GetResult r) { loaded = std::move(r); });
  FUZZ_CHECK(loaded.has_value() && loaded->status.ok()) << "first Get: not answered or failed";
  cache.Get("h", [&](GetResult r) { hit = std::move(r); });
  FUZZ_CHECK(hit.has_value() && hit->status.ok()) << "second Get: not answered or failed";
  const int64_t charge = 1 + 1 + kCacheEntryOverheadBytes;
  if (options.store.capacity_bytes / options.store.shard_count >= 2 * charge) {
    FUZZ_CHECK(hit->source == Source::kHit) << "a value that fits was not cached";
    FUZZ_CHECK(hit->ttl_remaining > absl::ZeroDuration()) << "a hit with no TTL left";
  }
  cache.Get("n", [&](GetResult r) { timed_out = std::move(r); });
  FUZZ_CHECK(!timed_out.has_value()) << "a load whose origin never answers ended at once";
  timers.Advance(options.load_timeout);
  FUZZ_CHECK(timed_out.has_value() && !timed_out->status.ok())
      << "a load whose origin never answers did not end at --load-timeout="
      << absl::FormatDuration(options.load_timeout);
}

void CheckAccepted(const ServerConfig& config) {
  FUZZ_CHECK(!config.Describe().empty());
  FUZZ_CHECK(config.MaxRequestBytes() > config.cache.max_key_bytes)
      << "MaxRequestBytes " << config.MaxRequestBytes();
  FUZZ_CHECK(config.OriginMaxResponseBytes() > config.cache.max_value_bytes)
      << "OriginMaxResponseBytes " << config.OriginMaxResponseBytes();
  const absl::StatusOr<OriginSpec> spec = ParseOriginUrl(config.origin);
  FUZZ_CHECK(spec.ok()) << "Validate() accepted an origin ParseOriginUrl rejects: "
                        << spec.status();
  if (spec->kind == OriginSpec::Kind::kSim) {
    testing::FakeTimerQueue timers;
    absl::StatusOr<std::unique_ptr<Origin>> origin =
        CreateOrigin(*spec, timers, {.max_response_bytes = config.OriginMaxResponseBytes()});
    FUZZ_CHECK(origin.ok()) << "an accepted sim origin cannot be created: " << origin.status();
  }
  RunCore(config.cache);
}

}  // namespace
}  // namespace flightcache

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flightcache;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args = {"flightcache-server"};
  std::map<std::string, std::string> env;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "FLIGHTCACHE_") && absl::StrContains(line, '=')) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
      env[kv.first] = kv.second;
    } else if (args.size() <= kMaxArgs) {
      args.emplace_back(line);
    }
  }
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  const absl::StatusOr<CommandLine> cl =
      ParseServerCommandLine(static_cast<int>(argv.size()), argv.data(),
                             [&env](const std::string& name) -> std::optional<std::string> {
                               auto it = env.find(name);
                               if (it == env.end()) return std::nullopt;
                               return it->second;
                             });
  if (!cl.ok()) {
    const absl::string_view m = cl.status().message();
    FUZZ_CHECK(absl::IsInvalidArgument(cl.status())) << cl.status();
    FUZZ_CHECK(IsOneLine(m)) << "not one line: '" << m << "'";
    FUZZ_CHECK(absl::StartsWith(m, "--") || absl::StartsWith(m, "unexpected argument"))
        << "names no flag: '" << m << "'";
    return 0;
  }
  const absl::Status valid = cl->config.Validate();
  if (!valid.ok()) {
    const absl::string_view m = valid.message();
    FUZZ_CHECK(absl::IsInvalidArgument(valid)) << valid;
    FUZZ_CHECK(IsOneLine(m)) << "not one line: '" << m << "'";
    FUZZ_CHECK(absl::StartsWith(m, "--") || absl::StartsWith(m, "invalid cache options: "))
        << "names no flag: '" << m << "'";
    return 0;
  }
  CheckAccepted(cl->config);
  return 0;
}
