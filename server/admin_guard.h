// AdminGuard: who may make the admin call (Invalidate: it wipes keys for every caller).
//
// With a token (--admin-token-file) a call must carry the metadata `authorization: Bearer
// <token>`, from any peer. Without one, only loopback (127.0.0.0/8, ::1) and unix-socket peers
// may make it: a sidecar's own pod. Everything else is PERMISSION_DENIED, with a message that says
// what was missing and never the token.
//
// The token is kept only as its SHA-256 digest, and a presented token is hashed and compared with
// OpenSSL's CRYPTO_memcmp: the time taken reveals neither the token's bytes nor its length.
//
// Thread-safety: immutable after construction; Check() is safe from any thread. (A token file
// that changes while the server runs: AdminTokenFile, server/admin_token_file.h.)
//
// Usage:
//   AdminGuard guard = AdminGuard::WithToken(*support::ReadSecretFile("admin token file", path));
//   if (absl::Status s = guard.Check(context->peer(), authorization); !s.ok()) refuse(s);
#ifndef FLIGHTCACHE_SERVER_ADMIN_GUARD_H_
#define FLIGHTCACHE_SERVER_ADMIN_GUARD_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flightcache {

// Who may make the admin call: an AdminGuard, or an AdminTokenFile that follows its file.
class AdminCheck {
 public:
  virtual ~AdminCheck() = default;
  // `peer` as gRPC names it ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/run/x.sock");
  // `authorization` the call's authorization metadata, if it has one.
  virtual absl::Status Check(absl::string_view peer,
                             std::optional<absl::string_view> authorization) const = 0;
};

class AdminGuard final : public AdminCheck {
 public:
  static AdminGuard LocalPeersOnly() { return AdminGuard(std::nullopt); }
  // REQUIRES: !token.empty().
  static AdminGuard WithToken(absl::string_view token);

  absl::Status Check(absl::string_view peer,
                     std::optional<absl::string_view> authorization) const override;

  bool has_token() const { return token_digest_.has_value(); }
  // True if both guards want the same token (or both none).
  bool SameTokenAs(const AdminGuard& other) const { return token_digest_ == other.token_digest_; }

 private:
  using Digest = std::array<uint8_t, 32>;
  explicit AdminGuard(std::optional<Digest> digest) : token_digest_(digest) {}

  std::optional<Digest> token_digest_;
};

// A loopback or unix-socket peer, as gRPC names peers.
bool IsLocalPeer(absl::string_view peer);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_ADMIN_GUARD_H_
