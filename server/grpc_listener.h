// StartGrpcServer: builds and starts a gRPC server that listens on one address of its own, the
// way every flightcache program that serves gRPC does it: flightcache-server, the demo origin
// (client/origin), the benchmark helpers (bench/) and the tests' servers.
//
// The one rule it adds: SO_REUSEPORT is off. gRPC sets it by default, which lets a second server
// bind a port that is already taken and share it silently; a flightcache program must fail
// instead (exit "cannot listen"), so that a test or an operator learns the port is busy.
//
// It lives in server/ because it is the server side of gRPC: lib/ stays free of gRPC, and
// `flightcache_grpc_listener` is a library of its own that depends on nothing else in server/,
// so client/ and bench/ programs link it without linking (or including) the server.
//
// Thread-safety: as grpc::ServerBuilder (one thread builds).
//
// Usage:
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&service);  // and any other option
//   absl::StatusOr<GrpcServer> server = StartGrpcServer(builder, "127.0.0.1:0");
//   if (!server.ok()) { print server.status().message(); exit; }  // "cannot listen on ..."
//   use server->port; server->server->Shutdown();
#ifndef FLIGHTCACHE_SERVER_GRPC_LISTENER_H_
#define FLIGHTCACHE_SERVER_GRPC_LISTENER_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace flightcache {

struct GrpcServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the bound port (the one picked, for port 0)
};

// Adds `address` (HOST:PORT, [IPV6]:PORT or unix:PATH) to `builder` as a listening port with
// SO_REUSEPORT off, plaintext unless `credentials` are given (TLS: server/tls_listener.h), then
// builds and starts the server. UNAVAILABLE "cannot listen on <address>" if it cannot be bound
// (taken, not local, malformed).
absl::StatusOr<GrpcServer> StartGrpcServer(
    grpc::ServerBuilder& builder, const std::string& address,
    std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_GRPC_LISTENER_H_
