// flightcache-bench-cancel: how fast an abandoned load's origin call is cancelled, end to end —
// the "cancellation" benchmark of bench/e2e/cancellation.sh.
//
// The program plays the origin and the client of a flightcache-server that the script started
// with --origin=grpc://<--origin-listen>:
//   origin  serves flightcache.v1.Origin. Fetches of "warm-*" keys answer at once (to check the
//           path); every other fetch never answers and waits to be cancelled. The moment gRPC
//           tells the origin a fetch was cancelled (ServerUnaryReactor::OnCancel) is recorded.
//   client  sends --loads Gets of distinct cold keys, each with its own deadline (--deadline
//           after it is sent), one every --spread/--loads (0: all at once). Each Get is its
//           load's only waiter, so when its deadline passes the load has no waiter left and the
//           server must cancel the origin call (--abandoned-loads=cancel, the default). Before
//           them, --warmup-loads of the same kind (not measured) bring the processes to a steady
//           state. Then it asks the server's Stats for loads_inflight / loads_queued: must be 0.
//   report  per load, cancel latency = (origin saw CANCELLED) − (the Get's deadline): the
//           percentiles, and what the client saw.
// --role=both (the default) does all three in one process. With --role=origin (until SIGTERM,
// then writes --records), --role=client (writes --calls) and --role=report (reads both), origin
// and client run as two processes, so that neither's gRPC threads delay the other's: with all
// deadlines at once, one process would have to handle 1,000 expiring calls and 1,000 incoming
// cancellations in the same instant.
//
// Clocks: deadlines and cancel times are WallNow() (CLOCK_REALTIME) of processes on one
// machine, so they are directly comparable.
//
// Usage:
//   flightcache-bench-cancel --target=127.0.0.1:P --origin-listen=127.0.0.1:Q --loads=1000
//       --deadline=100ms --spread=2s [--json=FILE]
// Exit 0 when the run completed (whatever the figures), 1 when it could not measure (the path
// to the origin never worked, or a Get did not end with DEADLINE_EXCEEDED), 2 on a bad flag.
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "flightcache/support/flags.h"
#include "flightcache/v1/cache.grpc.pb.h"
#include "flightcache/v1/origin.grpc.pb.h"
#include "server/grpc_listener.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "HOST:PORT of the flightcache server.");
ABSL_FLAG(std::string, origin_listen, "127.0.0.1:50052",
          "HOST:PORT to serve the Origin on (the server's --origin must point here).");
ABSL_FLAG(int, loads, 1000, "Number of abandoned loads (one Get of a distinct key each).");
ABSL_FLAG(absl::Duration, deadline, absl::Milliseconds(100), "Deadline of each Get.");
ABSL_FLAG(absl::Duration, spread, absl::Seconds(2),
          "Send the Gets evenly over this long (0: all at once).");
ABSL_FLAG(absl::Duration, wait, absl::Seconds(10),
          "After the last deadline, how long to wait for the origin to see every cancellation.");
ABSL_FLAG(std::string, key_prefix, "cancel-", "Prefix of the measured keys (make it unique).");
ABSL_FLAG(int, warmup_loads, 200,
          "Abandoned loads sent first, in the same way, and not measured (0: none).");
ABSL_FLAG(std::string, json, "", "Also write the figures as JSON to this file.");
ABSL_FLAG(bool, direct, false,
          "Control run: the client calls the origin's Fetch itself, with no flightcache-server in "
          "between, to show what gRPC alone costs to deliver the cancellations.");
ABSL_FLAG(std::string, role, "both",
          "both (one process), or origin / client / report (two processes, then the report).");
ABSL_FLAG(std::string, records, "", "role=origin writes, role=report reads: what the origin saw.");
ABSL_FLAG(std::string, calls, "", "role=client writes, role=report reads: what the client saw.");

namespace flightcache::bench {
namespace {

namespace pb = ::flightcache::v1;

// The wall clock as gRPC reads it (clock_gettime(CLOCK_REALTIME) through std::chrono), for every
// timestamp and deadline here. Not absl::Now(): Abseil interpolates the time from the CPU's cycle
// counter between calibrations, and on this VM it was seen up to ~20 ms away from the kernel's
// clock, which put some deadlines (measured with it) after the moment gRPC (using the kernel's
// clock) actually enforced them.
absl::Time WallNow() { return absl::FromChrono(std::chrono::system_clock::now()); }

// What the origin saw of one key.
struct FetchRecord {
  absl::Time fetch_at = absl::InfinitePast();
  absl::Time cancel_at = absl::InfinitePast();  // InfinitePast: not cancelled (yet)
  int fetches = 0;
};

class RecordingOrigin final : public pb::Origin::CallbackService {
 public:
  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                  const pb::FetchRequest* request,
                                  pb::FetchResponse* response) override {
    const absl::Time now = WallNow();
    if (absl::StartsWith(request->key(), "warm-")) {
      response->set_value("w");
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    {
      absl::MutexLock lock(&mu_);
      FetchRecord& r = records_[request->key()];
      ++r.fetches;
      r.fetch_at = now;
    }
    return new PendingFetch(*this, request->key());
  }

  absl::flat_hash_map<std::string, FetchRecord> Records() const {
    absl::MutexLock lock(&mu_);
    return records_;
  }
  int64_t cancels_seen() const {
    absl::MutexLock lock(&mu_);
    return cancels_;
  }
  int64_t pending() const {
    absl::MutexLock lock(&mu_);
    return pending_;
  }

 private:
  // A fetch that never answers: it ends only when the client cancels it (or the server shuts
  // down, which cancels it too).
  class PendingFetch final : public grpc::ServerUnaryReactor {
   public:
    PendingFetch(RecordingOrigin& origin, std::string key) : origin_(origin), key_(std::move(key)) {
      absl::MutexLock lock(&origin_.mu_);
      ++origin_.pending_;
    }
    void OnCancel() override {
      // Take the time first: this is the moment the origin learns of the cancellation.
      const absl::Time now = WallNow();
      {
        absl::MutexLock lock(&origin_.mu_);
        origin_.records_[key_].cancel_at = now;
        ++origin_.cancels_;
        --origin_.pending_;
      }
      Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    RecordingOrigin& origin_;
    const std::string key_;
  };

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, FetchRecord> records_ ABSL_GUARDED_BY(mu_);
  int64_t cancels_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
};

double Percentile(std::vector<double> sorted, double q) {
  if (sorted.empty()) return NAN;
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

struct Summary {
  size_t n = 0;
  double min = NAN, p50 = NAN, p90 = NAN, p99 = NAN, max = NAN, mean = NAN;
};

Summary Summarize(std::vector<double> v) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.p50 = Percentile(v, 0.50);
  s.p90 = Percentile(v, 0.90);
  s.p99 = Percentile(v, 0.99);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  return s;
}

std::string SummaryJson(const Summary& s) {
  return absl::StrFormat(
      "{\"n\":%d,\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
      "\"mean_ms\":%.3f}",
      s.n, s.min, s.p50, s.p90, s.p99, s.max, s.mean);
}

std::string SummaryText(const Summary& s) {
  return absl::StrFormat("n=%d min=%.3fms p50=%.3fms p90=%.3fms p99=%.3fms max=%.3fms mean=%.3fms",
                         s.n, s.min, s.p50, s.p90, s.p99, s.max, s.mean);
}

// What the client saw of one Get.
struct CallResult {
  std::string key;
  absl::Time deadline;
  int code = 0;
  absl::Time answered_at;
};

// The server's Stats after the run: a first reading, and a final one after polling a little in
// case the counters lag.
struct AfterStats {
  bool ok = false;
  pb::StatsResponse first;
  pb::StatsResponse final;
};

struct ClientRun {
  std::vector<CallResult> calls;
  AfterStats stats;
};

std::unique_ptr<grpc::Server> StartOrigin(RecordingOrigin& origin) {
  grpc::ServerBuilder builder;
  builder.RegisterService(&origin);
  absl::StatusOr<GrpcServer> server = StartGrpcServer(builder, absl::GetFlag(FLAGS_origin_listen));
  if (!server.ok()) {
    std::fprintf(stderr, "flightcache-bench-cancel: %s\n",
                 std::string(server.status().message()).c_str());
    return nullptr;
  }
  return std::move(server->server);
}

// Sends the Gets and waits for every answer, then for the origin to see the cancellations
// (`all_cancels_seen`, polled until --wait after the last deadline), then reads Stats.
// nullopt when the path to the origin never worked.
std::optional<ClientRun> RunClient(const std::function<bool()>& all_cancels_seen) {
  const int loads = absl::GetFlag(FLAGS_loads);
  const absl::Duration deadline = absl::GetFlag(FLAGS_deadline);
  const absl::Duration spread = absl::GetFlag(FLAGS_spread);
  const std::string prefix = absl::GetFlag(FLAGS_key_prefix);
  const bool direct = absl::GetFlag(FLAGS_direct);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(absl::GetFlag(direct ? FLAGS_origin_listen : FLAGS_target),
                          grpc::InsecureChannelCredentials());
  std::unique_ptr<pb::Cache::Stub> stub = pb::Cache::NewStub(channel);
  std::unique_ptr<pb::Origin::Stub> origin_stub = pb::Origin::NewStub(channel);

  // Check the whole path first: the server may have tried the origin before it was listening
  // and be backing off its reconnection.
  bool path_ok = false;
  for (int i = 0; i < 100 && !path_ok; ++i) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(WallNow() + absl::Seconds(2)));
    const std::string key = absl::StrCat("warm-", prefix, i);
    if (direct) {
      pb::FetchRequest request;
      request.set_key(key);
      pb::FetchResponse response;
      path_ok = origin_stub->Fetch(&context, request, &response).ok() && response.value() == "w";
    } else {
      pb::GetRequest request;
      request.set_key(key);
      pb::GetResponse response;
      path_ok = stub->Get(&context, request, &response).ok() && response.value() == "w";
    }
    if (!path_ok) absl::SleepFor(absl::Milliseconds(100));
  }
  if (!path_ok) {
    std::fprintf(stderr, "flightcache-bench-cancel: the server never reached the origin\n");
    return std::nullopt;
  }

  // One measured Get (or Fetch, --direct). gRPC borrows it until the callback has run.
  struct Call {
    CallResult result;
    grpc::ClientContext context;
    pb::GetRequest request;
    pb::GetResponse response;
    pb::FetchRequest fetch_request;
    pb::FetchResponse fetch_response;
  };
  // Sends `n` Gets of keys `key_prefix`0.. evenly over `over` and waits for every answer.
  auto run_phase = [&](const std::string& key_prefix, int n, absl::Duration over) {
    std::vector<std::unique_ptr<Call>> phase;
    phase.reserve(n);
    for (int i = 0; i < n; ++i) {
      auto call = std::make_unique<Call>();
      call->result.key = absl::StrCat(key_prefix, i);
      call->request.set_key(call->result.key);
      call->fetch_request.set_key(call->result.key);
      call->fetch_request.set_attempt(1);
      phase.push_back(std::move(call));
    }
    absl::BlockingCounter answered(n);
    const absl::Time start = WallNow();
    for (int i = 0; i < n; ++i) {
      Call& call = *phase[i];
      const absl::Time send_at = start + over * i / n;
      const absl::Time now = WallNow();
      if (send_at > now) absl::SleepFor(send_at - now);
      call.result.deadline = WallNow() + deadline;
      call.context.set_deadline(absl::ToChronoTime(call.result.deadline));
      auto done = [&call, &answered](grpc::Status status) {
        call.result.answered_at = WallNow();
        call.result.code = static_cast<int>(status.error_code());
        answered.DecrementCount();
      };
      if (direct) {
        origin_stub->async()->Fetch(&call.context, &call.fetch_request, &call.fetch_response,
                                    std::move(done));
      } else {
        stub->async()->Get(&call.context, &call.request, &call.response, std::move(done));
      }
    }
    answered.Wait();  // orders every callback's writes before the reads that follow
    return phase;
  };

  // Warm-up, not measured: the same kind of abandoned loads, so that the measured ones meet
  // threads, connections and allocator pools in their steady state, as in a running sidecar.
  const int warmup = absl::GetFlag(FLAGS_warmup_loads);
  if (warmup > 0) {
    run_phase(absl::StrCat("warmup-", prefix), warmup, spread * warmup / loads);
    absl::SleepFor(absl::Milliseconds(200));  // let the warm-up's cancellations land
  }
  std::vector<std::unique_ptr<Call>> calls = run_phase(prefix, loads, spread);
  absl::Time last_deadline = absl::InfinitePast();
  for (const auto& call : calls) last_deadline = std::max(last_deadline, call->result.deadline);

  const absl::Time wait_until = last_deadline + absl::GetFlag(FLAGS_wait);
  while (!all_cancels_seen() && WallNow() < wait_until) absl::SleepFor(absl::Milliseconds(5));

  // The flight leaves the table when its last waiter leaves, so 0 is expected at once.
  ClientRun run;
  auto read_stats = [&](pb::StatsResponse* stats) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(WallNow() + absl::Seconds(5)));
    return stub->Stats(&context, pb::StatsRequest(), stats).ok();
  };
  run.stats.ok = !direct && read_stats(&run.stats.first);
  run.stats.final = run.stats.first;
  const absl::Time stats_deadline = WallNow() + absl::Seconds(5);
  while (run.stats.ok &&
         (run.stats.final.loads_inflight() != 0 || run.stats.final.loads_queued() != 0) &&
         WallNow() < stats_deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    read_stats(&run.stats.final);
  }
  for (const auto& call : calls) run.calls.push_back(call->result);
  return run;
}

// Prints the figures (and writes --json). Returns the exit status.
int Report(const absl::flat_hash_map<std::string, FetchRecord>& records, const ClientRun& run,
           int64_t origin_pending) {
  const int loads = static_cast<int>(run.calls.size());
  const absl::Duration deadline = absl::GetFlag(FLAGS_deadline);
  const absl::Duration spread = absl::GetFlag(FLAGS_spread);
  std::vector<double> cancel_ms;       // origin saw CANCELLED − deadline
  std::vector<double> client_late_ms;  // client saw DEADLINE_EXCEEDED − deadline
  int64_t deadline_exceeded = 0, other_status = 0, never_fetched = 0, not_cancelled = 0;
  int64_t fetched_after_deadline = 0, extra_fetches = 0, fetched = 0;
  for (const CallResult& call : run.calls) {
    if (call.code == static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED)) {
      ++deadline_exceeded;
    } else {
      ++other_status;
    }
    client_late_ms.push_back(absl::ToDoubleMilliseconds(call.answered_at - call.deadline));
    auto it = records.find(call.key);
    if (it == records.end()) {
      ++never_fetched;
      continue;
    }
    ++fetched;
    const FetchRecord& r = it->second;
    extra_fetches += r.fetches - 1;
    if (r.fetch_at > call.deadline) ++fetched_after_deadline;
    if (r.cancel_at == absl::InfinitePast()) {
      ++not_cancelled;
      continue;
    }
    cancel_ms.push_back(absl::ToDoubleMilliseconds(r.cancel_at - call.deadline));
  }
  const Summary cancel = Summarize(cancel_ms);
  const Summary client = Summarize(client_late_ms);
  const pb::StatsResponse& first = run.stats.first;
  const pb::StatsResponse& last = run.stats.final;

  std::printf("loads=%d deadline=%s spread=%s role=%s\n", loads,
              absl::FormatDuration(deadline).c_str(), absl::FormatDuration(spread).c_str(),
              absl::GetFlag(FLAGS_role).c_str());
  std::printf("client: DEADLINE_EXCEEDED=%lld other=%lld; answer - deadline: %s\n",
              static_cast<long long>(deadline_exceeded), static_cast<long long>(other_status),
              SummaryText(client).c_str());
  std::printf(
      "origin: fetched=%lld never_fetched=%lld extra_fetches=%lld "
      "fetched_after_deadline=%lld cancelled=%zu not_cancelled=%lld\n",
      static_cast<long long>(fetched), static_cast<long long>(never_fetched),
      static_cast<long long>(extra_fetches), static_cast<long long>(fetched_after_deadline),
      cancel_ms.size(), static_cast<long long>(not_cancelled));
  std::printf("cancel latency (origin saw CANCELLED - deadline): %s\n",
              SummaryText(cancel).c_str());
  if (run.stats.ok) {
    std::printf(
        "server after: loads_inflight=%lld loads_queued=%lld (first reading %lld/%lld) "
        "loads_cancelled=%lld loads_started=%lld origin_fetches=%lld\n",
        static_cast<long long>(last.loads_inflight()), static_cast<long long>(last.loads_queued()),
        static_cast<long long>(first.loads_inflight()),
        static_cast<long long>(first.loads_queued()),
        static_cast<long long>(last.loads_cancelled()),
        static_cast<long long>(last.loads_started()),
        static_cast<long long>(last.origin_fetches()));
  } else {
    std::printf("server after: %s\n",
                absl::GetFlag(FLAGS_direct) ? "n/a (--direct: no server)" : "Stats failed");
  }

  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    const std::string json = absl::StrCat(
        "{\"loads\":", loads, ",\"deadline_ms\":", absl::ToDoubleMilliseconds(deadline),
        ",\"spread_ms\":", absl::ToDoubleMilliseconds(spread), ",\"role\":\"",
        absl::GetFlag(FLAGS_role), "\",\"direct\":", absl::GetFlag(FLAGS_direct) ? "true" : "false",
        ",\"deadline_exceeded\":", deadline_exceeded, ",\"other_status\":", other_status,
        ",\"fetched\":", fetched, ",\"never_fetched\":", never_fetched,
        ",\"extra_fetches\":", extra_fetches,
        ",\"fetched_after_deadline\":", fetched_after_deadline, ",\"cancelled\":", cancel_ms.size(),
        ",\"not_cancelled\":", not_cancelled, ",\"cancel_latency\":", SummaryJson(cancel),
        ",\"client_lateness\":", SummaryJson(client),
        ",\"stats_ok\":", run.stats.ok ? "true" : "false",
        ",\"loads_inflight\":", last.loads_inflight(), ",\"loads_queued\":", last.loads_queued(),
        ",\"loads_inflight_first\":", first.loads_inflight(),
        ",\"loads_queued_first\":", first.loads_queued(),
        ",\"loads_cancelled\":", last.loads_cancelled(),
        ",\"loads_started\":", last.loads_started(), ",\"origin_fetches\":", last.origin_fetches(),
        ",\"origin_pending\":", origin_pending, "}\n");
    std::ofstream out(json_path, std::ios::trunc);
    out << json;
    if (!out) {
      std::fprintf(stderr, "flightcache-bench-cancel: cannot write %s\n", json_path.c_str());
    }
  }
  return other_status == 0 ? 0 : 1;
}

// --- Files of the two-process mode: one record per line, times in Unix nanoseconds. ---

bool WriteRecords(const std::string& path,
                  const absl::flat_hash_map<std::string, FetchRecord>& records, int64_t pending) {
  std::ofstream out(path, std::ios::trunc);
  out << "pending " << pending << "\n";
  for (const auto& [key, r] : records) {
    const int64_t cancel_ns =
        r.cancel_at == absl::InfinitePast() ? 0 : absl::ToUnixNanos(r.cancel_at);
    out << key << " " << absl::ToUnixNanos(r.fetch_at) << " " << cancel_ns << " " << r.fetches
        << "\n";
  }
  return static_cast<bool>(out);
}

bool WriteCalls(const std::string& path, const ClientRun& run) {
  std::ofstream out(path, std::ios::trunc);
  const pb::StatsResponse& f = run.stats.first;
  const pb::StatsResponse& l = run.stats.final;
  out << "stats " << (run.stats.ok ? 1 : 0) << " " << f.loads_inflight() << " " << f.loads_queued()
      << " " << l.loads_inflight() << " " << l.loads_queued() << " " << l.loads_cancelled() << " "
      << l.loads_started() << " " << l.origin_fetches() << "\n";
  for (const CallResult& c : run.calls) {
    out << c.key << " " << absl::ToUnixNanos(c.deadline) << " " << c.code << " "
        << absl::ToUnixNanos(c.answered_at) << "\n";
  }
  return static_cast<bool>(out);
}

// Splits a line into int64 fields after the first (the key or tag); false if malformed.
bool ParseFields(const std::string& line, std::string* first, std::vector<int64_t>* fields) {
  std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (parts.empty()) return false;
  *first = parts[0];
  fields->clear();
  for (size_t i = 1; i < parts.size(); ++i) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(parts[i], &v)) return false;
    fields->push_back(v);
  }
  return true;
}

bool ReadRecords(const std::string& path, absl::flat_hash_map<std::string, FetchRecord>* records,
                 int64_t* pending) {
  std::ifstream in(path);
  std::string line, key;
  std::vector<int64_t> f;
  while (std::getline(in, line)) {
    if (!ParseFields(line, &key, &f)) return false;
    if (key == "pending" && f.size() == 1) {
      *pending = f[0];
      continue;
    }
    if (f.size() != 3) return false;
    FetchRecord& r = (*records)[key];
    r.fetch_at = absl::FromUnixNanos(f[0]);
    r.cancel_at = f[1] == 0 ? absl::InfinitePast() : absl::FromUnixNanos(f[1]);
    r.fetches = static_cast<int>(f[2]);
  }
  return in.eof();
}

bool ReadCalls(const std::string& path, ClientRun* run) {
  std::ifstream in(path);
  std::string line, key;
  std::vector<int64_t> f;
  while (std::getline(in, line)) {
    if (!ParseFields(line, &key, &f)) return false;
    if (key == "stats" && f.size() == 8) {
      run->stats.ok = f[0] != 0;
      run->stats.first.set_loads_inflight(f[1]);
      run->stats.first.set_loads_queued(f[2]);
      run->stats.final.set_loads_inflight(f[3]);
      run->stats.final.set_loads_queued(f[4]);
      run->stats.final.set_loads_cancelled(f[5]);
      run->stats.final.set_loads_started(f[6]);
      run->stats.final.set_origin_fetches(f[7]);
      continue;
    }
    if (f.size() != 3) return false;
    run->calls.push_back(CallResult{.key = key,
                                    .deadline = absl::FromUnixNanos(f[0]),
                                    .code = static_cast<int>(f[1]),
                                    .answered_at = absl::FromUnixNanos(f[2])});
  }
  return in.eof();
}

int Main(int argc, char** argv) {
  // As flightcache-server does: Debian builds Abseil with mutex deadlock detection on, which
  // roughly doubles the cost of every absl::Mutex lock, gRPC's own included. A baseline or a
  // probe that paid it while the server does not would skew the comparison.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "flightcache-bench-cancel: measure (origin saw CANCELLED) - (waiter's deadline) for "
      "abandoned loads.\n"
      "  flightcache-bench-cancel --target=HOST:P --origin-listen=HOST:Q --loads=1000 "
      "--deadline=100ms --spread=2s [--role=both|origin|client|report]");
  support::ParseFlagsOrExit(argc, argv, "bench/");
  const int loads = absl::GetFlag(FLAGS_loads);
  const std::string role = absl::GetFlag(FLAGS_role);
  if (loads < 1 || absl::GetFlag(FLAGS_deadline) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_spread) < absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "flightcache-bench-cancel: need --loads >= 1, --deadline > 0, --spread >= 0\n");
    return 2;
  }
  if (role != "both" && role != "origin" && role != "client" && role != "report") {
    std::fprintf(stderr,
                 "flightcache-bench-cancel: --role must be both, origin, client or report\n");
    return 2;
  }
  if ((role == "origin" || role == "report") && absl::GetFlag(FLAGS_records).empty()) {
    std::fprintf(stderr, "flightcache-bench-cancel: --role=%s needs --records\n", role.c_str());
    return 2;
  }
  if ((role == "client" || role == "report") && absl::GetFlag(FLAGS_calls).empty()) {
    std::fprintf(stderr, "flightcache-bench-cancel: --role=%s needs --calls\n", role.c_str());
    return 2;
  }

  if (role == "report") {
    absl::flat_hash_map<std::string, FetchRecord> records;
    int64_t pending = 0;
    ClientRun run;
    if (!ReadRecords(absl::GetFlag(FLAGS_records), &records, &pending) ||
        !ReadCalls(absl::GetFlag(FLAGS_calls), &run)) {
      std::fprintf(stderr, "flightcache-bench-cancel: cannot read --records / --calls\n");
      return 1;
    }
    return Report(records, run, pending);
  }

  if (role == "client") {
    // The origin is another process: wait the whole --wait for it to see the cancellations.
    std::optional<ClientRun> run = RunClient([] { return false; });
    if (!run.has_value()) return 1;
    if (!WriteCalls(absl::GetFlag(FLAGS_calls), *run)) {
      std::fprintf(stderr, "flightcache-bench-cancel: cannot write --calls\n");
      return 1;
    }
    return 0;
  }

  if (role == "origin") {
    // SIGTERM/SIGINT are taken with sigwait; blocked before gRPC starts its threads.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    RecordingOrigin origin;
    std::unique_ptr<grpc::Server> server = StartOrigin(origin);
    if (server == nullptr) return 1;
    std::fprintf(stderr, "flightcache-bench-cancel: origin serving on %s\n",
                 absl::GetFlag(FLAGS_origin_listen).c_str());
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    // Records first: the shutdown below cancels whatever is still pending.
    const bool written =
        WriteRecords(absl::GetFlag(FLAGS_records), origin.Records(), origin.pending());
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
    return written ? 0 : 1;
  }

  // role == "both"
  RecordingOrigin origin;
  std::unique_ptr<grpc::Server> server = StartOrigin(origin);
  if (server == nullptr) return 1;
  std::optional<ClientRun> run = RunClient([&origin, loads] {
    return origin.cancels_seen() >= loads + absl::GetFlag(FLAGS_warmup_loads);
  });
  int status = 1;
  if (run.has_value()) status = Report(origin.Records(), *run, origin.pending());
  // Anything still pending is cancelled by the shutdown (OnCancel finishes it).
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  return status;
}

}  // namespace
}  // namespace flightcache::bench

int main(int argc, char** argv) { return flightcache::bench::Main(argc, argv); }
