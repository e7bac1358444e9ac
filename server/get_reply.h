// GetReplyBytes: a successful Get's reply (a serialised v1::GetResponse) for a value the cache
// shares, without copying a large value once per caller.
//
// A load's result goes to every caller that waited for it: 10,000 callers of one 1 MiB value
// would each serialise their own 1 MiB copy of it (10 GiB at once) if the reply were built with
// protobuf. Here a value of at least kReferenceValueFrom bytes is not copied: the reply is three
// slices — the fields before the value's bytes, the value's own bytes (the slice holds a
// reference to the Value until gRPC has sent them), the fields after. A smaller value is copied
// into one slice with the other fields, which is cheaper than the two small allocations a
// reference costs. Either way the bytes are exactly protobuf's serialisation of the message
// (fields in number order, zero fields left out).
//
// Thread-safety: a pure function. Lifetime: the ByteBuffer keeps what it refers to alive.
#ifndef FLIGHTCACHE_SERVER_GET_REPLY_H_
#define FLIGHTCACHE_SERVER_GET_REPLY_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "flightcache/v1/cache.pb.h"
#include "flightcache/value.h"

namespace flightcache {

inline constexpr size_t kReferenceValueFrom = 4096;

struct GetReplyFields {
  Value value;  // null: no value field
  v1::Source source = v1::SOURCE_UNSPECIFIED;
  int64_t ttl_remaining_ms = 0;
  int64_t stale_ms = 0;
};

grpc::ByteBuffer GetReplyBytes(const GetReplyFields& fields);

// A hit's reply: `value` holds bytes the cache lends only while the caller reads them, so they
// are copied, whatever their size, into one slice with the other fields (`fields.value` is not
// read). An empty `value` is no value field, as for GetReplyBytes.
grpc::ByteBuffer GetReplyBytesCopying(std::string_view value, const GetReplyFields& fields);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_GET_REPLY_H_
