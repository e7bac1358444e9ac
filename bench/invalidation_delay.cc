// flightcache-bench-invalidation: how long an Invalidate on one fleet sidecar takes to reach
// another — the propagation probe of bench/e2e/fleet.sh.
//
// Why a program: a poll with flightcache-cli costs a process start and a new channel (about
// 25 ms), five times the 5 ms target, so it could not tell 1 ms from 20 ms. Here one process
// keeps a channel open to each sidecar and polls in a tight loop (one Get round trip, about
// 0.1-0.3 ms, is the resolution; the report gives it).
//
// Each round, on its own key PREFIX<round>:
//   1. Get on A (A loads it from the origin; the origin's value names its fetch, so a reload
//      gives a different value), then Get on B until B answers it as a local HIT;
//   2. t0 = now; Invalidate the key on A;
//   3. Get on B in a tight loop until the value differs from step 1's: the delay is the end of
//      that Get minus t0. It includes B's reload of the key (one origin fetch) and at most one
//      poll round trip; a round still stale after --timeout counts as not propagated.
// Needs both sidecars on one fleet (--fleet) and an origin whose value changes per fetch
// (flightcache-origin does: "... v=N ...").
//
// Thread-safety: single-threaded, synchronous stubs. Lifetime: one run, then exit.
// Usage:
//   flightcache-bench-invalidation --a=127.0.0.1:50051 --b=127.0.0.1:50052 --rounds=200
// Prints one JSON object on stdout:
//   {"rounds":N,"propagated":K,"not_propagated":F,"errors":E,
//    "delay_ms":{"p50":..,"p99":..,"max":..},"invalidate_rpc_ms":{...},"poll_rtt_ms":{...},
//    "polls_per_round":{...}}
// Exit 0 when every round propagated, 1 otherwise, 2 on a bad flag, 3 when a sidecar is down.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/support/flags.h"
#include "flightcache/v1/cache.grpc.pb.h"

ABSL_FLAG(std::string, a, "127.0.0.1:50051", "HOST:PORT of the sidecar that invalidates.");
ABSL_FLAG(std::string, b, "127.0.0.1:50052", "HOST:PORT of the sidecar that is polled.");
ABSL_FLAG(int, rounds, 200, "Invalidations to time (one fresh key each).");
ABSL_FLAG(std::string, key_prefix, "inval-", "Prefix of the keys (PREFIX0 .. PREFIX<rounds-1>).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2),
          "A round whose B still answers the old value after this is not propagated.");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(5), "Deadline of each call.");

namespace flightcache::bench {
namespace {

namespace pb = ::flightcache::v1;

std::unique_ptr<pb::Cache::Stub> Connect(const std::string& target) {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    return nullptr;
  }
  return pb::Cache::NewStub(channel);
}

grpc::Status Get(pb::Cache::Stub& stub, const std::string& key, pb::GetResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_deadline)));
  pb::GetRequest request;
  request.set_key(key);
  return stub.Get(&context, request, response);
}

grpc::Status Invalidate(pb::Cache::Stub& stub, const std::string& key) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_deadline)));
  pb::InvalidateRequest request;
  request.add_keys(key);
  pb::InvalidateResponse response;
  return stub.Invalidate(&context, request, &response);
}

// {"p50":..,"p99":..,"max":..} of `values` (nearest rank); zeros when empty.
std::string Percentiles(std::vector<double> values) {
  if (values.empty()) return R"({"p50":0,"p99":0,"max":0,"n":0})";
  std::sort(values.begin(), values.end());
  auto rank = [&values](double q) {
    const size_t i = static_cast<size_t>(q * static_cast<double>(values.size()) + 0.999999);
    return values[std::clamp<size_t>(i, 1, values.size()) - 1];
  };
  return absl::StrFormat(R"({"p50":%.3f,"p99":%.3f,"max":%.3f,"n":%d})", rank(0.50), rank(0.99),
                         values.back(), values.size());
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

int Main(int argc, char** argv) {
  // As the other probes: the server turns Abseil's deadlock detection off, so must the client.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "flightcache-bench-invalidation: time an Invalidate on sidecar A until sidecar B serves "
      "the new value.\n"
      "  flightcache-bench-invalidation --a=HOST:PORT --b=HOST:PORT [--rounds=200]");
  support::ParseFlagsOrExit(argc, argv, "bench/");
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const std::string prefix = absl::GetFlag(FLAGS_key_prefix);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (rounds < 1) {
    std::fprintf(stderr, "flightcache-bench-invalidation: --rounds must be >= 1\n");
    return 2;
  }
  std::unique_ptr<pb::Cache::Stub> a = Connect(absl::GetFlag(FLAGS_a));
  std::unique_ptr<pb::Cache::Stub> b = Connect(absl::GetFlag(FLAGS_b));
  if (a == nullptr || b == nullptr) {
    std::fprintf(stderr, "flightcache-bench-invalidation: cannot connect to --%s\n",
                 a == nullptr ? "a" : "b");
    return 3;
  }

  std::vector<double> delay_ms, invalidate_ms, poll_ms, polls_per_round;
  int not_propagated = 0, errors = 0;
  auto error = [&errors](const char* what, const grpc::Status& status) {
    if (errors++ == 0) {
      std::fprintf(stderr, "flightcache-bench-invalidation: %s: %s\n", what,
                   status.error_message().c_str());
    }
  };
  for (int round = 0; round < rounds; ++round) {
    const std::string key = absl::StrCat(prefix, round);
    pb::GetResponse loaded;
    if (grpc::Status s = Get(*a, key, &loaded); !s.ok()) {
      error("Get on A", s);
      continue;
    }
    // B must hold the key itself: its first Get is a fleet hit, the next ones local hits.
    bool cached_on_b = false;
    for (int attempt = 0; attempt < 10 && !cached_on_b; ++attempt) {
      pb::GetResponse on_b;
      if (grpc::Status s = Get(*b, key, &on_b); !s.ok()) {
        error("Get on B", s);
        break;
      }
      cached_on_b = on_b.source() == pb::SOURCE_HIT && on_b.value() == loaded.value();
    }
    if (!cached_on_b) {
      ++errors;
      continue;
    }

    const absl::Time t0 = absl::Now();
    if (grpc::Status s = Invalidate(*a, key); !s.ok()) {
      error("Invalidate on A", s);
      continue;
    }
    invalidate_ms.push_back(Ms(absl::Now() - t0));
    bool propagated = false;
    int polls = 0;
    while (absl::Now() - t0 < timeout) {
      const absl::Time poll_start = absl::Now();
      pb::GetResponse on_b;
      const grpc::Status s = Get(*b, key, &on_b);
      const absl::Time poll_end = absl::Now();
      ++polls;
      if (!s.ok()) {
        error("Get on B (poll)", s);
        continue;
      }
      if (on_b.value() != loaded.value()) {
        delay_ms.push_back(Ms(poll_end - t0));
        propagated = true;
        break;
      }
      poll_ms.push_back(Ms(poll_end - poll_start));  // stale answers: B's local hits
    }
    polls_per_round.push_back(polls);
    if (!propagated) ++not_propagated;
  }

  std::printf(
      "{\"rounds\":%d,\"propagated\":%zu,\"not_propagated\":%d,\"errors\":%d,\"delay_ms\":%s,"
      "\"invalidate_rpc_ms\":%s,\"poll_rtt_ms\":%s,\"polls_per_round\":%s}\n",
      rounds, delay_ms.size(), not_propagated, errors, Percentiles(delay_ms).c_str(),
      Percentiles(invalidate_ms).c_str(), Percentiles(poll_ms).c_str(),
      Percentiles(polls_per_round).c_str());
  return static_cast<int>(delay_ms.size()) == rounds ? 0 : 1;
}

}  // namespace
}  // namespace flightcache::bench

int main(int argc, char** argv) { return flightcache::bench::Main(argc, argv); }
