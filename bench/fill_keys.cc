// flightcache-bench-fill: loads the keys PREFIX0 .. PREFIX(N-1) into a flightcache server, each
// exactly once, with BatchGet — the set-up step of the "hits" and "memory" end-to-end benchmarks
// (bench/e2e/). flightcache-loadgen draws keys at random, so reaching every one of N keys would
// take about N·ln N calls; this walks them in order instead.
//
// Key names match flightcache-loadgen's (--key-prefix + decimal index), so a later
// `flightcache-loadgen --keys=N --key-prefix=P` finds every key warm.
//
// Usage:
//   flightcache-bench-fill --target=127.0.0.1:50051 --keys=1000000 --batch=500 --parallel=4
// Prints one JSON object on stdout: {"keys":N,"ok":K,"failed":F,"elapsed_s":T,"keys_per_s":R}.
// Exit 0 when every key answered OK, 1 otherwise, 2 on a bad flag, 3 when the target is down.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/support/flags.h"
#include "flightcache/v1/cache.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "HOST:PORT of the flightcache server.");
ABSL_FLAG(uint64_t, keys, 10000, "Number of keys to load: PREFIX0 .. PREFIX(N-1).");
ABSL_FLAG(std::string, key_prefix, "key-", "Prefix of every key (as flightcache-loadgen's).");
ABSL_FLAG(int, batch, 500, "Keys per BatchGet (at most the server's --max-batch-keys).");
ABSL_FLAG(int, parallel, 4, "BatchGet calls in flight.");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(30), "Deadline of each BatchGet.");

namespace flightcache::bench {
namespace {

namespace pb = ::flightcache::v1;

int Main(int argc, char** argv) {
  // As flightcache-server does: Debian builds Abseil with mutex deadlock detection on, which
  // roughly doubles the cost of every absl::Mutex lock, gRPC's own included. A baseline or a
  // probe that paid it while the server does not would skew the comparison.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "flightcache-bench-fill: load PREFIX0..PREFIX(N-1) into a flightcache server once each.\n"
      "  flightcache-bench-fill --target=HOST:PORT --keys=N [--batch=500] [--parallel=4]");
  support::ParseFlagsOrExit(argc, argv, "bench/");
  const uint64_t num_keys = absl::GetFlag(FLAGS_keys);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int parallel = absl::GetFlag(FLAGS_parallel);
  const std::string prefix = absl::GetFlag(FLAGS_key_prefix);
  const absl::Duration deadline = absl::GetFlag(FLAGS_deadline);
  if (batch < 1 || parallel < 1 || parallel > 256) {
    std::fprintf(stderr, "flightcache-bench-fill: --batch must be >= 1, --parallel in [1, 256]\n");
    return 2;
  }

  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    std::fprintf(stderr, "flightcache-bench-fill: cannot connect to %s\n",
                 absl::GetFlag(FLAGS_target).c_str());
    return 3;
  }
  std::unique_ptr<pb::Cache::Stub> stub = pb::Cache::NewStub(channel);

  const uint64_t num_batches = (num_keys + batch - 1) / batch;
  std::atomic<uint64_t> next_batch{0};  // relaxed: a work counter, orders nothing
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> failed{0};
  std::atomic<bool> first_error_logged{false};
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int w = 0; w < parallel; ++w) {
    workers.emplace_back([&] {
      for (uint64_t b = next_batch.fetch_add(1, std::memory_order_relaxed); b < num_batches;
           b = next_batch.fetch_add(1, std::memory_order_relaxed)) {
        pb::BatchGetRequest request;
        const uint64_t first = b * batch;
        const uint64_t last = std::min(num_keys, first + batch);
        for (uint64_t i = first; i < last; ++i) request.add_keys(absl::StrCat(prefix, i));
        pb::BatchGetResponse response;
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
        const grpc::Status status = stub->BatchGet(&context, request, &response);
        int64_t batch_ok = 0;
        if (status.ok()) {
          for (const pb::KeyResult& r : response.results()) {
            if (r.code() == 0) {
              ++batch_ok;
            } else if (!first_error_logged.exchange(true)) {
              std::fprintf(stderr, "flightcache-bench-fill: key %s: code %d: %s\n", r.key().c_str(),
                           r.code(), r.message().c_str());
            }
          }
        } else if (!first_error_logged.exchange(true)) {
          std::fprintf(stderr, "flightcache-bench-fill: BatchGet: %s\n",
                       status.error_message().c_str());
        }
        ok.fetch_add(batch_ok, std::memory_order_relaxed);
        failed.fetch_add(static_cast<int64_t>(last - first) - batch_ok, std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& t : workers) t.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "{\"keys\":%llu,\"ok\":%lld,\"failed\":%lld,\"elapsed_s\":%.3f,\"keys_per_s\":%.0f}\n",
      static_cast<unsigned long long>(num_keys), static_cast<long long>(ok.load()),
      static_cast<long long>(failed.load()), elapsed,
      elapsed > 0 ? static_cast<double>(num_keys) / elapsed : 0.0);
  return failed.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace flightcache::bench

int main(int argc, char** argv) { return flightcache::bench::Main(argc, argv); }
