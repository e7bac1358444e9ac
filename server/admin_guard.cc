#include "server/admin_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cassert>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace flightcache {
namespace {

std::array<uint8_t, 32> Sha256(absl::string_view text) {
  std::array<uint8_t, 32> digest;
  static_assert(sizeof(digest) == SHA256_DIGEST_LENGTH);
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

// "HOST:PORT" -> HOST, for a host without brackets.
absl::string_view HostOf(absl::string_view host_port) {
  const size_t colon = host_port.rfind(':');
  return colon == absl::string_view::npos ? absl::string_view() : host_port.substr(0, colon);
}

bool IsLoopbackV4(absl::string_view host) {
  in_addr address{};
  if (inet_pton(AF_INET, std::string(host).c_str(), &address) != 1) return false;
  return (ntohl(address.s_addr) >> 24) == 127;
}

bool IsLoopbackV6(absl::string_view host) {
  const size_t zone = host.find('%');  // fe80::1%eth0: a zone is never loopback's
  if (zone != absl::string_view::npos) host = host.substr(0, zone);
  in6_addr address{};
  if (inet_pton(AF_INET6, std::string(host).c_str(), &address) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&address)) return true;
  return IN6_IS_ADDR_V4MAPPED(&address) && address.s6_addr[12] == 127;  // ::ffff:127.x.y.z
}

absl::Status Denied(absl::string_view why) {
  return absl::PermissionDeniedError(absl::StrCat("Invalidate is an admin call: ", why));
}

}  // namespace

bool IsLocalPeer(absl::string_view peer) {
  if (absl::StartsWith(peer, "unix:") || absl::StartsWith(peer, "unix-abstract:")) return true;
  absl::string_view rest = peer;
  if (absl::ConsumePrefix(&rest, "ipv4:")) return IsLoopbackV4(HostOf(rest));
  if (!absl::ConsumePrefix(&rest, "ipv6:")) return false;
  // "[::1]:5000", or with the brackets percent-encoded (newer gRPC releases).
  absl::string_view close = "]";
  if (!absl::ConsumePrefix(&rest, "[")) {
    if (!absl::ConsumePrefix(&rest, "%5B")) return false;
    close = "%5D";
  }
  const size_t end = rest.find(close);
  return end != absl::string_view::npos && IsLoopbackV6(rest.substr(0, end));
}

AdminGuard AdminGuard::WithToken(absl::string_view token) {
  assert(!token.empty());
  return AdminGuard(Sha256(token));
}

absl::Status AdminGuard::Check(absl::string_view peer,
                               std::optional<absl::string_view> authorization) const {
  if (!token_digest_.has_value()) {
    if (IsLocalPeer(peer)) return absl::OkStatus();
    return Denied(
        absl::StrCat("without --admin-token-file only loopback and unix-socket peers "
                     "may make it, not ",
                     peer));
  }
  if (!authorization.has_value()) {
    return Denied("send the metadata 'authorization: Bearer <token>' (--admin-token-file)");
  }
  absl::string_view token = *authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ")) {
    return Denied("the authorization metadata is not 'Bearer <token>'");
  }
  const std::array<uint8_t, 32> presented = Sha256(token);
  if (CRYPTO_memcmp(presented.data(), token_digest_->data(), presented.size()) != 0) {
    return Denied("the admin token is wrong");
  }
  return absl::OkStatus();
}

}  // namespace flightcache
