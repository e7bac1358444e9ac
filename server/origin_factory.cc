#include "server/origin_factory.h"

#include <grpcpp/security/credentials.h>

#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "flightcache/sim/sim_origin.h"

namespace flightcache {
namespace {

// Far more replicas than one sidecar should spread over; bounds the per-replica metrics.
constexpr size_t kMaxReplicas = 64;

// HOST:PORT or [IPV6]:PORT with a port in [1, 65535]: where a grpc:// origin can be.
absl::Status ValidateHostPort(absl::string_view host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc origin '", host_port, "' has no port (want grpc://HOST:PORT)"));
  }
  const absl::string_view host = host_port.substr(0, colon);
  const absl::string_view port_text = host_port.substr(colon + 1);
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc origin '", host_port, "' has no host (want grpc://HOST:PORT)"));
  }
  const bool bracketed = host.front() == '[' && host.back() == ']' && host.size() > 2;
  if (!bracketed && absl::StrContains(host, ':')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grpc origin host '", host, "' is ambiguous: write IPv6 addresses as [ADDR]:PORT"));
  }
  if (!bracketed && (absl::StrContains(host, '/') || absl::StrContains(host, '?') ||
                     absl::StrContains(host, '@') || absl::StrContains(host, ' '))) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc origin host '", host, "' is not a host name or address"));
  }
  int port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc origin port '", port_text, "' is not a port in [1, 65535]"));
  }
  return absl::OkStatus();
}

// The part after "grpc://dns:" of `url`: "///NAME:PORT".
absl::StatusOr<OriginSpec> ParseDnsTarget(absl::string_view url, absl::string_view rest, bool tls) {
  if (!absl::ConsumePrefix(&rest, "///")) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", url,
                     "': want dns:///NAME:PORT (three slashes: naming a DNS server, "
                     "dns://SERVER/NAME:PORT, is not supported; the system's resolver is used)"));
  }
  if (absl::StrContains(rest, ',')) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", url, "': dns:/// names one service; list no other replica beside it"));
  }
  if (absl::StrContains(rest, '/') || absl::StrContains(rest, '?')) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", url, "': a dns:/// origin takes no path or query"));
  }
  if (absl::Status s = ValidateHostPort(rest); !s.ok()) return s;
  const size_t colon = rest.rfind(':');
  OriginSpec spec;
  spec.kind = OriginSpec::Kind::kGrpc;
  spec.tls = tls;
  spec.dns_name =
      std::string(absl::StripPrefix(absl::StripSuffix(rest.substr(0, colon), "]"), "["));
  // ValidateHostPort checked the port.
  (void)absl::SimpleAtoi(rest.substr(colon + 1), &spec.dns_port);
  return spec;
}

// grpc as CreateOrigin() builds every GrpcOrigin of `spec` with.
GrpcOriginOptions ForSpec(const OriginSpec& spec, TimerQueue& timers, GrpcOriginOptions grpc) {
  grpc.timers = &timers;
  // grpcs:// without credentials from the caller: the system's roots, no client certificate.
  if (spec.tls && grpc.tls_credentials == nullptr) {
    grpc.tls_credentials = grpc::SslCredentials(grpc::SslCredentialsOptions());
  }
  if (!spec.tls) grpc.tls_credentials = nullptr;
  // A replica found by DNS is dialled by address; its certificate names the service.
  if (spec.tls && !spec.dns_name.empty()) grpc.tls_server_name = spec.dns_name;
  return grpc;
}

// A replica whose GrpcOrigin could not be made: every fetch fails with why.
class UnusableReplica final : public Origin {
 public:
  UnusableReplica(std::string name, absl::Status why)
      : name_(std::move(name)), why_(std::move(why)) {}
  void Fetch(const FetchRequest&, std::stop_token, FetchCallback done) override { done(why_); }
  std::string Describe() const override { return name_; }

 private:
  const std::string name_;
  const absl::Status why_;
};

}  // namespace

absl::StatusOr<OriginSpec> ParseOriginUrl(absl::string_view url) {
  // Every error below quotes the URL: one with a control character (a newline from a templated
  // manifest) would make a multi-line, forgeable log line. Refused here, shown escaped.
  if (absl::c_any_of(url, [](char c) { return absl::ascii_iscntrl(c); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", absl::CHexEscape(url), "' contains a control character"));
  }
  OriginSpec spec;
  absl::string_view rest = url;
  // grpcs:// is grpc:// over TLS: the same targets, checked alike.
  const bool tls = absl::ConsumePrefix(&rest, "grpcs://");
  if (tls || absl::ConsumePrefix(&rest, "grpc://")) {
    if (absl::ConsumePrefix(&rest, "dns:")) return ParseDnsTarget(url, rest, tls);
    if (absl::StrContains(rest, '/') || absl::StrContains(rest, '?')) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", url, "': a grpc origin takes no path or query (want grpc://HOST:PORT)"));
    }
    // Replicas: grpc://HOST:PORT,HOST:PORT,...
    for (absl::string_view target : absl::StrSplit(rest, ',')) {
      if (absl::Status s = ValidateHostPort(target); !s.ok()) return s;
      spec.grpc_targets.emplace_back(target);
    }
    if (spec.grpc_targets.size() > kMaxReplicas) {
      return absl::InvalidArgumentError(absl::StrCat("'", url, "' lists ", spec.grpc_targets.size(),
                                                     " replicas; at most ", kMaxReplicas));
    }
    spec.kind = OriginSpec::Kind::kGrpc;
    spec.tls = tls;
    return spec;
  }
  if (absl::ConsumePrefix(&rest, "sim://") || absl::ConsumePrefix(&rest, "sim:")) {
    // sim:// has no host: everything is in the query.
    if (!rest.empty() && rest.front() != '?') {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", url, "': the sim origin takes only parameters (want sim://?latency_ms=20&...)"));
    }
    absl::ConsumePrefix(&rest, "?");
    absl::StatusOr<sim::OriginModelOptions> sim = sim::ParseSimOriginQuery(rest);
    if (!sim.ok()) return sim.status();
    spec.kind = OriginSpec::Kind::kSim;
    spec.sim = *std::move(sim);
    return spec;
  }
  if (absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", url, "': http origins are not supported yet (use grpc://HOST:PORT or sim://?...)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", url,
                   "' is not an origin URL (want grpc://HOST:PORT, grpcs://HOST:PORT or "
                   "sim://?latency_ms=20&...)"));
}

absl::StatusOr<std::unique_ptr<Origin>> CreateOrigin(const OriginSpec& spec, TimerQueue& timers,
                                                     GrpcOriginOptions grpc,
                                                     const ReplicaSetOptions& replicas,
                                                     ReplicaSet::FetchObserver observer) {
  switch (spec.kind) {
    case OriginSpec::Kind::kGrpc: {
      grpc = ForSpec(spec, timers, std::move(grpc));
      std::vector<std::unique_ptr<Origin>> origins;
      for (const std::string& target : spec.grpc_targets) {
        absl::StatusOr<std::unique_ptr<GrpcOrigin>> origin = GrpcOrigin::Create(target, grpc);
        if (!origin.ok()) return origin.status();
        origins.push_back(*std::move(origin));
      }
      if (origins.size() == 1 && spec.dns_name.empty()) return std::move(origins.front());
      if (absl::Status s = replicas.Validate(); !s.ok()) return s;
      return std::unique_ptr<Origin>(std::make_unique<ReplicaSet>(
          std::move(origins), timers.clock(), replicas, std::move(observer)));
    }
    case OriginSpec::Kind::kSim:
      if (absl::Status s = spec.sim.Validate(); !s.ok()) return s;
      return std::unique_ptr<Origin>(std::make_unique<sim::SimOrigin>(spec.sim, timers));
  }
  return absl::InternalError("unknown origin kind");
}

std::function<std::unique_ptr<Origin>(const std::string& address)> MakeReplicaMaker(
    const OriginSpec& spec, TimerQueue& timers, GrpcOriginOptions grpc) {
  return [grpc = ForSpec(spec, timers, std::move(grpc))](const std::string& address) {
    absl::StatusOr<std::unique_ptr<GrpcOrigin>> origin = GrpcOrigin::Create(address, grpc);
    if (!origin.ok()) return std::unique_ptr<Origin>(new UnusableReplica(address, origin.status()));
    return std::unique_ptr<Origin>(*std::move(origin));
  };
}

}  // namespace flightcache
