// Status mapping: the one place where absl::Status (the core's errors) and grpc::Status (the
// wire's) are converted, and where the core's enums become their proto counterparts.
//
// The two status code spaces have the same numbers (both follow google.rpc.Code), so codes map
// one to one; the mapping still goes through a switch so a code outside the known range becomes
// UNKNOWN instead of an invalid enum value.
//
// Thread-safety: pure functions.
#ifndef FLIGHTCACHE_SERVER_STATUS_MAPPING_H_
#define FLIGHTCACHE_SERVER_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "flightcache/flight_cache.h"
#include "flightcache/v1/cache.pb.h"

namespace flightcache {

grpc::StatusCode ToGrpcCode(absl::StatusCode code);
absl::StatusCode FromGrpcCode(grpc::StatusCode code);

// An OK status maps to grpc::Status::OK (whose message is always empty).
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

v1::Source ToProtoSource(Source source);

// The canonical upper-case name of a gRPC code ("DEADLINE_EXCEEDED"), for metrics labels.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_STATUS_MAPPING_H_
