#include "server/get_reply.h"

#include <grpcpp/support/slice.h>

#include <cstring>
#include <string_view>

namespace flightcache {
namespace {

constexpr uint64_t kVarint = 0;
constexpr uint64_t kLengthDelimited = 2;

// A few fields of protobuf's wire format, encoded on the stack: the reply's bytes around the
// value, so that building a reply allocates nothing but its slice.
class WireFields {
 public:
  // A varint: a length or an integer field's value.
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      bytes_[size_++] = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    bytes_[size_++] = static_cast<char>(v);
  }

  // A field's tag (number << 3 | wire type).
  void Tag(int field, uint64_t wire_type) {
    Varint((static_cast<uint64_t>(field) << 3) | wire_type);
  }

  // An int64 or enum field as protobuf writes it: nothing for zero; negatives as 10-byte varints.
  void IntField(int field, int64_t v) {
    if (v == 0) return;
    Tag(field, kVarint);
    Varint(static_cast<uint64_t>(v));
  }

  std::string_view view() const { return {bytes_, size_}; }

 private:
  // Room for three integer fields of at most 11 bytes each (a tag and a 10-byte varint).
  char bytes_[33];
  size_t size_ = 0;
};

// The fields after the value (source, ttl_remaining_ms, stale_ms).
WireFields Suffix(const GetReplyFields& f) {
  WireFields out;
  out.IntField(v1::GetResponse::kSourceFieldNumber, f.source);
  out.IntField(v1::GetResponse::kTtlRemainingMsFieldNumber, f.ttl_remaining_ms);
  out.IntField(v1::GetResponse::kStaleMsFieldNumber, f.stale_ms);
  return out;
}

// The value field's tag and length (nothing for an empty value: proto3 leaves empty bytes out).
WireFields ValueHeader(size_t value_size) {
  WireFields out;
  if (value_size == 0) return out;
  out.Tag(v1::GetResponse::kValueFieldNumber, kLengthDelimited);
  out.Varint(value_size);
  return out;
}

// A slice of the value's own bytes, holding a reference to the Value until gRPC drops it.
grpc::Slice ReferToValue(const Value& value) {
  auto* held = new Value(value);  // owned by the slice: deleted by its destroy callback
  return grpc::Slice(
      const_cast<char*>(held->data()), held->size(), [](void* v) { delete static_cast<Value*>(v); },
      held);
}

// The whole reply in one new slice: header, a copy of the value, suffix.
grpc::ByteBuffer OneSlice(std::string_view head, std::string_view value, std::string_view tail) {
  grpc::Slice slice(head.size() + value.size() + tail.size());  // uninitialised, ours to fill
  char* out = reinterpret_cast<char*>(const_cast<uint8_t*>(slice.begin()));
  for (std::string_view part : {head, value, tail}) {
    if (part.empty()) continue;  // an empty part's data() may be null: no memcpy from it
    std::memcpy(out, part.data(), part.size());
    out += part.size();
  }
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace

grpc::ByteBuffer GetReplyBytes(const GetReplyFields& fields) {
  const size_t value_bytes = fields.value == nullptr ? 0 : fields.value.size();
  if (value_bytes < kReferenceValueFrom) {
    return GetReplyBytesCopying(value_bytes == 0 ? std::string_view() : fields.value.view(),
                                fields);
  }
  const WireFields head = ValueHeader(value_bytes);
  const WireFields tail = Suffix(fields);
  const grpc::Slice slices[] = {grpc::Slice(head.view().data(), head.view().size()),
                                ReferToValue(fields.value),
                                grpc::Slice(tail.view().data(), tail.view().size())};
  return grpc::ByteBuffer(slices, tail.view().empty() ? 2 : 3);
}

grpc::ByteBuffer GetReplyBytesCopying(std::string_view value, const GetReplyFields& fields) {
  return OneSlice(ValueHeader(value.size()).view(), value, Suffix(fields).view());
}

}  // namespace flightcache
