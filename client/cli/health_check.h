// CheckHealth: one grpc.health.v1.Health/Check call, without generated code for health.proto.
//
// Debian's gRPC ships the health service for servers but not the client's generated stub, and
// compiling our own copy of grpc/health/v1/health.proto could clash with another copy linked
// into the same binary. The request and response are two tiny messages, so they are encoded by
// hand and sent through grpc::GenericStub.
//
// Thread-safety: thread-safe; blocks the calling thread for at most `deadline`.
#ifndef FLIGHTCACHE_CLIENT_CLI_HEALTH_CHECK_H_
#define FLIGHTCACHE_CLIENT_CLI_HEALTH_CHECK_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flightcache::cli {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
absl::string_view ServingStatusName(ServingStatus status);

// Wire encoding of HealthCheckRequest{service} and decoding of HealthCheckResponse, exposed for
// tests.
std::string EncodeHealthCheckRequest(absl::string_view service);
absl::StatusOr<ServingStatus> DecodeHealthCheckResponse(absl::string_view bytes);

// The serving status of `service` ("" = the whole server), or the RPC's error.
absl::StatusOr<ServingStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& service, absl::Duration deadline);

}  // namespace flightcache::cli

#endif  // FLIGHTCACHE_CLIENT_CLI_HEALTH_CHECK_H_
