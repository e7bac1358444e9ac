#include "client/tls_flags.h"

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "server/grpc_tls.h"

ABSL_FLAG(bool, tls, false, "Dial the server with TLS (implied by --tls-ca-file).");
ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: trust these CAs (PEM) for the server's certificate; empty: the system's.");
ABSL_FLAG(std::string, tls_cert_file, "", "mTLS: present this certificate chain (PEM).");
ABSL_FLAG(std::string, tls_key_file, "", "mTLS: the key of --tls-cert-file (PEM).");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: the name the server's certificate must carry, if not the target's host.");

namespace flightcache {

void ClientChannelSecurity::Apply(grpc::ChannelArguments& args) const {
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
}

absl::StatusOr<ClientChannelSecurity> ClientChannelSecurityFromFlags() {
  const TlsClientFiles files{.flag_prefix = "--tls",
                             .ca_file = absl::GetFlag(FLAGS_tls_ca_file),
                             .cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                             .key_file = absl::GetFlag(FLAGS_tls_key_file)};
  const bool tls = absl::GetFlag(FLAGS_tls) || !files.ca_file.empty() || !files.cert_file.empty() ||
                   !files.key_file.empty();
  ClientChannelSecurity security{.server_name = absl::GetFlag(FLAGS_tls_server_name)};
  if (!tls) {
    if (!security.server_name.empty()) {
      return absl::InvalidArgumentError("--tls-server-name needs TLS (--tls or --tls-ca-file)");
    }
    security.credentials = grpc::InsecureChannelCredentials();
    return security;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeTlsChannelCredentials(files);
  if (!credentials.ok()) return credentials.status();
  security.credentials = *std::move(credentials);
  return security;
}

}  // namespace flightcache
