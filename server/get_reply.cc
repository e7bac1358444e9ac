#include "server/get_reply.h"

#include <grpcpp/support/slice.h>

#include <string>
#include <utility>

namespace flightcache {
namespace {

// Protobuf's wire format: a varint, a field's tag (number << 3 | wire type).
void AppendVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

constexpr uint64_t kVarint = 0;
constexpr uint64_t kLengthDelimited = 2;

void AppendTag(std::string& out, int field, uint64_t wire_type) {
  AppendVarint(out, (static_cast<uint64_t>(field) << 3) | wire_type);
}

// An int64 or enum field as protobuf writes it: nothing for zero; negatives as 10-byte varints.
void AppendIntField(std::string& out, int field, int64_t v) {
  if (v == 0) return;
  AppendTag(out, field, kVarint);
  AppendVarint(out, static_cast<uint64_t>(v));
}

// The fields after the value (source, ttl_remaining_ms, stale_ms).
std::string Suffix(const GetReplyFields& f) {
  std::string out;
  AppendIntField(out, v1::GetResponse::kSourceFieldNumber, f.source);
  AppendIntField(out, v1::GetResponse::kTtlRemainingMsFieldNumber, f.ttl_remaining_ms);
  AppendIntField(out, v1::GetResponse::kStaleMsFieldNumber, f.stale_ms);
  return out;
}

// The value field's tag and length (nothing for no value or an empty one: proto3 leaves empty
// bytes out).
std::string ValueHeader(const Value& value) {
  std::string out;
  if (value == nullptr || value.size() == 0) return out;
  AppendTag(out, v1::GetResponse::kValueFieldNumber, kLengthDelimited);
  AppendVarint(out, value.size());
  return out;
}

// A slice of the value's own bytes, holding a reference to the Value until gRPC drops it.
grpc::Slice ReferToValue(const Value& value) {
  auto* held = new Value(value);  // owned by the slice: deleted by its destroy callback
  return grpc::Slice(
      const_cast<char*>(held->data()), held->size(), [](void* v) { delete static_cast<Value*>(v); },
      held);
}

}  // namespace

grpc::ByteBuffer GetReplyBytes(const GetReplyFields& fields) {
  std::string head = ValueHeader(fields.value);
  const std::string tail = Suffix(fields);
  const size_t value_bytes = head.empty() ? 0 : fields.value.size();
  if (value_bytes < kReferenceValueFrom) {
    head.append(fields.value == nullptr ? "" : fields.value.data(), value_bytes);
    head += tail;
    grpc::Slice one(head);
    return grpc::ByteBuffer(&one, 1);
  }
  const grpc::Slice slices[] = {grpc::Slice(head), ReferToValue(fields.value), grpc::Slice(tail)};
  return grpc::ByteBuffer(slices, tail.empty() ? 2 : 3);
}

}  // namespace flightcache
