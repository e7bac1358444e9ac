// TLS from PEM files, for every flightcache program that dials gRPC over TLS: the sidecar's
// grpcs:// origin, flightcache-cli and flightcache-loadgen.
//
// The files are read and checked here, once, so that a wrong file fails at start-up with a line
// naming the flag (--origin-tls-key-file: "... does not match the certificate"), not later as a
// handshake error on every call. OpenSSL parses the PEM; a key must be the certificate's.
//
// A channel's files are read when it is made: rotating them means making a new channel (a
// restart for the sidecar's origin). The listener's files are watched (server/tls_listener.h).
//
// Thread-safety: free functions, safe to call concurrently.
//
// Usage:
//   TlsClientFiles files{.flag_prefix = "--origin-tls", .ca_file = "/etc/ca.pem"};
//   absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
//       MakeTlsChannelCredentials(files);
//   if (!creds.ok()) exit 2 with creds.status().message();
#ifndef FLIGHTCACHE_SERVER_GRPC_TLS_H_
#define FLIGHTCACHE_SERVER_GRPC_TLS_H_

#include <grpcpp/security/credentials.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flightcache {

// A certificate chain, a key or a CA bundle is far below this; a larger file is a mistake.
inline constexpr size_t kMaxPemFileBytes = size_t{1} << 20;

struct TlsClientFiles {
  // Names the flags in errors: "--tls" gives --tls-ca-file, --tls-cert-file, --tls-key-file.
  std::string flag_prefix = "--tls";
  // PEM CA certificates that must have signed the server's certificate; empty: the system's.
  std::string ca_file;
  // This side's certificate chain and its key, for mTLS: both or neither.
  std::string cert_file;
  std::string key_file;
};

// INVALID_ARGUMENT naming `what` unless `pem` holds at least one certificate and nothing that
// fails to parse as one.
absl::Status CheckCertificates(absl::string_view what, absl::string_view pem);
// INVALID_ARGUMENT unless `key_pem` is a private key and `cert_chain_pem`'s first certificate
// (the leaf) is the key's. Never shows the key.
absl::Status CheckKeyMatchesCertificate(absl::string_view key_pem,
                                        absl::string_view cert_chain_pem);

// Reads and checks `files`; errors name the flag ("--tls-ca-file: ...").
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeTlsChannelCredentials(
    const TlsClientFiles& files);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_GRPC_TLS_H_
