// flightcache-cli: one-shot calls to a flightcache server — get, invalidate, stats, health.
// This file only parses flags and arguments, makes the call and prints the answer.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cli/health_check.h"
#include "client/tls_flags.h"
#include "flightcache/support/file_util.h"
#include "flightcache/support/flags.h"
#include "flightcache/support/json_writer.h"
#include "flightcache/v1/cache.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "HOST:PORT of the flightcache server.");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(5), "Deadline of the call.");
ABSL_FLAG(bool, json, false, "Print the answer as one JSON object.");
ABSL_FLAG(bool, raw, false, "get: print the value's bytes exactly, without a trailing newline.");
ABSL_FLAG(std::string, admin_token_file, "",
          "invalidate: send the token in this file (authorization: Bearer <token>), for a server "
          "started with --admin-token-file.");

namespace flightcache::cli {
namespace {

namespace pb = ::flightcache::v1;

constexpr char kUsage[] =
    "flightcache-cli: one-shot calls to a flightcache server.\n"
    "\n"
    "  flightcache-cli [--target=HOST:PORT] [--deadline=5s] [--json] [TLS flags] COMMAND\n"
    "\n"
    "Commands:\n"
    "  get KEY            print the value (stdout) and its source and TTL (stderr)\n"
    "  invalidate KEY...  remove the keys; prints how many entries were removed (an admin call:\n"
    "                     from loopback, or with --admin-token-file=FILE)\n"
    "  stats              print the server's counters\n"
    "  health [SERVICE]   print the grpc.health.v1 serving status of the server (or SERVICE)\n"
    "\n"
    "TLS: --tls (system CAs) or --tls-ca-file=PEM; mTLS: --tls-cert-file and --tls-key-file;\n"
    "--tls-server-name=NAME when the target's host is not the certificate's name.\n"
    "\n"
    "Exit codes: 0 success (health: SERVING); 1 the call failed, or health is not SERVING or\n"
    "unreachable (so `flightcache-cli health` serves as a container health check); 2 bad flag,\n"
    "command or argument.";

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() +
         absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_deadline));
}

std::string SourceName(pb::Source source) {
  switch (source) {
    case pb::SOURCE_HIT:
      return "HIT";
    case pb::SOURCE_LOADED:
      return "LOADED";
    case pb::SOURCE_COALESCED:
      return "COALESCED";
    case pb::SOURCE_STALE:
      return "STALE";
    case pb::SOURCE_FLEET:
      return "FLEET";
    default:
      return "UNSPECIFIED";
  }
}

int Fail(absl::string_view command, const grpc::Status& status) {
  const std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << support::JsonObjectWriter()
                     .Add("code", code)
                     .Add("message", status.error_message())
                     .Build()
              << std::endl;
  }
  std::fprintf(stderr, "flightcache-cli: %s: %s: %s\n", std::string(command).c_str(), code.c_str(),
               status.error_message().c_str());
  return support::kExitFailure;
}

int Get(pb::Cache::Stub& stub, const std::string& key) {
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  pb::GetRequest request;
  request.set_key(key);
  pb::GetResponse response;
  const grpc::Status status = stub.Get(&context, request, &response);
  if (!status.ok()) return Fail("get", status);
  if (absl::GetFlag(FLAGS_json)) {
    support::JsonObjectWriter json;
    json.Add("key", key)
        .Add("value", response.value())
        .Add("source", SourceName(response.source()))
        .Add("ttl_remaining_ms", response.ttl_remaining_ms());
    // Like proto3's JSON mapping, a field that is always zero on fresh answers is left out.
    if (response.source() == pb::SOURCE_STALE) json.Add("stale_ms", response.stale_ms());
    std::cout << json.Build() << std::endl;
    return support::kExitOk;
  }
  std::fwrite(response.value().data(), 1, response.value().size(), stdout);
  if (!absl::GetFlag(FLAGS_raw)) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (response.source() == pb::SOURCE_STALE) {
    std::fprintf(stderr, "source=STALE stale=%s\n",
                 absl::FormatDuration(absl::Milliseconds(response.stale_ms())).c_str());
  } else {
    std::fprintf(stderr, "source=%s ttl_remaining=%s\n", SourceName(response.source()).c_str(),
                 absl::FormatDuration(absl::Milliseconds(response.ttl_remaining_ms())).c_str());
  }
  return support::kExitOk;
}

int Invalidate(pb::Cache::Stub& stub, const std::vector<std::string>& keys,
               const std::string& admin_token) {
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  if (!admin_token.empty()) context.AddMetadata("authorization", "Bearer " + admin_token);
  pb::InvalidateRequest request;
  for (const std::string& key : keys) request.add_keys(key);
  pb::InvalidateResponse response;
  const grpc::Status status = stub.Invalidate(&context, request, &response);
  if (!status.ok()) return Fail("invalidate", status);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << support::JsonObjectWriter().Add("removed", response.removed()).Build()
              << std::endl;
  } else {
    std::cout << "removed " << response.removed() << std::endl;
  }
  return support::kExitOk;
}

int Stats(pb::Cache::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  pb::StatsResponse r;
  const grpc::Status status = stub.Stats(&context, pb::StatsRequest(), &r);
  if (!status.ok()) return Fail("stats", status);
  const std::pair<const char*, int64_t> fields[] = {
      {"requests", r.requests()},
      {"hits", r.hits()},
      {"misses", r.misses()},
      {"coalesced", r.coalesced()},
      {"loads_started", r.loads_started()},
      {"loads_succeeded", r.loads_succeeded()},
      {"loads_failed", r.loads_failed()},
      {"loads_cancelled", r.loads_cancelled()},
      {"origin_fetches", r.origin_fetches()},
      {"hedges_sent", r.hedges_sent()},
      {"hedges_won", r.hedges_won()},
      {"loads_inflight", r.loads_inflight()},
      {"loads_queued", r.loads_queued()},
      {"entries", r.entries()},
      {"bytes", r.bytes()},
      {"evictions", r.evictions()},
      {"negative_hits", r.negative_hits()},
      // Serving stale's (zero unless --stale-while-revalidate, --stale-if-error or
      // --refresh-ahead).
      {"stale_served", r.stale_served()},
      {"refreshes_started", r.refreshes_started()},
      // The fleet tier's (all zero without --fleet).
      {"fleet_hits", r.fleet_hits()},
      {"fleet_leases_won", r.fleet_leases_won()},
      {"fleet_lease_waits", r.fleet_lease_waits()},
      {"fleet_errors", r.fleet_errors()},
      {"fleet_invalidations_received", r.fleet_invalidations_received()},
      {"permission_denied", r.permission_denied()},
  };
  if (absl::GetFlag(FLAGS_json)) {
    support::JsonObjectWriter json;
    for (const auto& [name, value] : fields) json.Add(name, value);
    std::cout << json.Build() << std::endl;
  } else {
    for (const auto& [name, value] : fields) std::cout << name << " " << value << "\n";
    std::cout << std::flush;
  }
  return support::kExitOk;
}

int Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  absl::StatusOr<ServingStatus> status =
      CheckHealth(channel, service, absl::GetFlag(FLAGS_deadline));
  if (!status.ok()) {
    std::fprintf(stderr, "flightcache-cli: health: %s: %s\n",
                 absl::StatusCodeToString(status.status().code()).c_str(),
                 std::string(status.status().message()).c_str());
    if (absl::GetFlag(FLAGS_json)) {
      std::cout << support::JsonObjectWriter()
                       .Add("status", "UNREACHABLE")
                       .Add("code", absl::StatusCodeToString(status.status().code()))
                       .Build()
                << std::endl;
    }
    return support::kExitFailure;
  }
  const std::string name(ServingStatusName(*status));
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << support::JsonObjectWriter().Add("status", name).Build() << std::endl;
  } else {
    std::cout << name << std::endl;
  }
  return *status == ServingStatus::kServing ? support::kExitOk : support::kExitFailure;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<std::string> args = support::ParseFlagsOrExit(argc, argv);
  if (args.empty()) support::ExitUsageError("missing command (get, invalidate, stats, health)");
  const std::string& command = args[0];
  const std::vector<std::string> operands(args.begin() + 1, args.end());
  if (absl::GetFlag(FLAGS_deadline) <= absl::ZeroDuration()) {
    support::ExitUsageError("--deadline must be > 0");
  }
  std::string admin_token;
  if (command == "get") {
    if (operands.size() != 1) support::ExitUsageError("get takes exactly one KEY");
  } else if (command == "invalidate") {
    if (operands.empty()) support::ExitUsageError("invalidate takes at least one KEY");
    if (const std::string path = absl::GetFlag(FLAGS_admin_token_file); !path.empty()) {
      absl::StatusOr<std::string> token = support::ReadSecretFile("admin token file", path);
      if (!token.ok()) {
        support::ExitUsageError(absl::StrCat("--admin-token-file: ", token.status().message()));
      }
      admin_token = *std::move(token);
    }
  } else if (command == "stats") {
    if (!operands.empty()) support::ExitUsageError("stats takes no arguments");
  } else if (command == "health") {
    if (operands.size() > 1) support::ExitUsageError("health takes at most one SERVICE");
  } else {
    support::ExitUsageError(absl::StrCat("unknown command '", command, "'"));
  }

  absl::StatusOr<ClientChannelSecurity> security = ClientChannelSecurityFromFlags();
  if (!security.ok()) support::ExitUsageError(security.status().message());
  grpc::ChannelArguments channel_args;
  security->Apply(channel_args);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target), security->credentials, channel_args);
  if (command == "health") return Health(channel, operands.empty() ? "" : operands[0]);
  std::unique_ptr<pb::Cache::Stub> stub = pb::Cache::NewStub(channel);
  if (command == "get") return Get(*stub, operands[0]);
  if (command == "invalidate") return Invalidate(*stub, operands, admin_token);
  return Stats(*stub);
}

}  // namespace
}  // namespace flightcache::cli

int main(int argc, char** argv) { return flightcache::cli::Main(argc, argv); }
