#include "server/dns_replicas.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace flightcache {
namespace {

// "ADDR:PORT" or "[ADDR6]:PORT" of one getaddrinfo result; empty for another family.
std::string FormatAddress(const addrinfo& ai, int port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ai.ai_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(ai.ai_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) == nullptr) return "";
    return absl::StrCat(text, ":", port);
  }
  if (ai.ai_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ai.ai_addr);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) == nullptr) return "";
    return absl::StrCat("[", text, "]:", port);
  }
  return "";
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveAddresses(const std::string& name, int port) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(name.c_str(), nullptr, &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve '", name, "': ", gai_strerror(rc)));
  }
  std::vector<std::string> addresses;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (std::string address = FormatAddress(*ai, port); !address.empty()) {
      addresses.push_back(std::move(address));
    }
  }
  freeaddrinfo(found);
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  if (addresses.empty()) {
    return absl::UnavailableError(absl::StrCat("'", name, "' resolves to no IPv4 or IPv6 address"));
  }
  return addresses;
}

DnsReplicaWatcher::DnsReplicaWatcher(DnsReplicaOptions options, ReplicaSet& replicas,
                                     OriginMaker make)
    : options_(std::move(options)), replicas_(replicas), make_(std::move(make)) {}

DnsReplicaWatcher::~DnsReplicaWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void DnsReplicaWatcher::Start() {
  ResolveNow();
  thread_ = std::thread([this] { Run(); });
}

void DnsReplicaWatcher::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.refresh);
      if (stopping_) return;
    }
    ResolveNow();
  }
}

std::vector<std::string> DnsReplicaWatcher::ResolveNow() {
  absl::MutexLock serial(&resolve_mu_);
  const std::string what = absl::StrCat("dns:///", options_.name, ":", options_.port);
  absl::StatusOr<std::vector<std::string>> found = options_.resolve(options_.name, options_.port);
  absl::MutexLock lock(&mu_);
  ++resolutions_;
  if (!found.ok() || found->empty()) {
    ++failures_;
    if (!failing_) {
      spdlog::warn("origin {}: {}; keeping the {} replica(s) known: {}", what,
                   found.ok() ? std::string("no address") : std::string(found.status().message()),
                   members_.size(), members_.empty() ? "none" : absl::StrJoin(members_, ","));
    }
    failing_ = true;
    return members_;
  }
  if (failing_) spdlog::info("origin {}: resolves again", what);
  failing_ = false;
  if (*found == members_) return members_;
  members_ = *std::move(found);
  // Under mu_: membership changes apply in resolution order. SetMembers() never calls back here.
  replicas_.SetMembers(members_, make_);
  spdlog::info("origin {}: {} replica(s): {}", what, members_.size(), absl::StrJoin(members_, ","));
  if (options_.on_change) {
    std::vector<std::string> names;
    for (const ReplicaStats& r : replicas_.stats()) names.push_back(r.name);
    options_.on_change(names);
  }
  return members_;
}

int64_t DnsReplicaWatcher::resolutions() const {
  absl::MutexLock lock(&mu_);
  return resolutions_;
}

int64_t DnsReplicaWatcher::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

}  // namespace flightcache
