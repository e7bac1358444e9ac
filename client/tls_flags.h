// The TLS flags that flightcache-cli and flightcache-loadgen share, and the channel credentials
// they give:
//   --tls                 dial with TLS, trusting the system's CAs (implied by --tls-ca-file)
//   --tls-ca-file=PEM     trust these CAs for the server's certificate
//   --tls-cert-file=PEM, --tls-key-file=PEM   present this certificate (mTLS)
//   --tls-server-name=N   the name the server's certificate must carry, when the target's host
//                         is not it (an IP address, say)
// None given: plaintext, as before.
//
// Thread-safety: reads flags; call after parsing them, from one thread.
//
// Usage:
//   absl::StatusOr<ClientChannelSecurity> security = ClientChannelSecurityFromFlags();
//   if (!security.ok()) support::ExitUsageError(security.status().message());
//   grpc::ChannelArguments args;
//   security->Apply(args);
//   grpc::CreateCustomChannel(target, security->credentials, args);
#ifndef FLIGHTCACHE_CLIENT_TLS_FLAGS_H_
#define FLIGHTCACHE_CLIENT_TLS_FLAGS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace flightcache {

struct ClientChannelSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string server_name;  // empty: the target's host

  // Adds what the credentials need to a channel's arguments (the server name override).
  void Apply(grpc::ChannelArguments& args) const;
};

// INVALID_ARGUMENT naming the flag at fault (an unreadable file, a key that is not the
// certificate's, --tls-server-name without TLS).
absl::StatusOr<ClientChannelSecurity> ClientChannelSecurityFromFlags();

}  // namespace flightcache

#endif  // FLIGHTCACHE_CLIENT_TLS_FLAGS_H_
