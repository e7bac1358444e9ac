#include "server/grpc_listener.h"

#include <grpcpp/security/server_credentials.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flightcache {

absl::StatusOr<GrpcServer> StartGrpcServer(grpc::ServerBuilder& builder, const std::string& address,
                                           std::shared_ptr<grpc::ServerCredentials> credentials) {
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  GrpcServer out;
  if (credentials == nullptr) credentials = grpc::InsecureServerCredentials();
  builder.AddListeningPort(address, credentials, &out.port);
  out.server = builder.BuildAndStart();
  if (out.server == nullptr || out.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return out;
}

}  // namespace flightcache
