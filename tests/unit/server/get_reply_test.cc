#include "server/get_reply.h"

#include <grpcpp/support/slice.h>

#include <cstdint>
#include <string>
#include <vector>

#include "flightcache/v1/cache.pb.h"
#include "flightcache/value.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

// The reply's bytes, in one string.
std::string Bytes(const grpc::ByteBuffer& reply) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(reply.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// What protobuf serialises for the same fields.
std::string Protobuf(const GetReplyFields& f) {
  v1::GetResponse r;
  if (f.value != nullptr) r.set_value(f.value.data(), f.value.size());
  r.set_source(f.source);
  r.set_ttl_remaining_ms(f.ttl_remaining_ms);
  r.set_stale_ms(f.stale_ms);
  return r.SerializeAsString();
}

TEST(GetReplyTest, BytesAreProtobufsSerialisationOfTheSameFields) {
  const std::vector<GetReplyFields> cases = {
      {.value = MakeValue("v"), .source = v1::SOURCE_COALESCED, .ttl_remaining_ms = 60'000},
      {.value = MakeValue(""), .source = v1::SOURCE_LOADED},
      {.value = nullptr, .source = v1::SOURCE_HIT, .ttl_remaining_ms = 1},
      {.value = MakeValue(std::string(300, 'x')), .source = v1::SOURCE_STALE, .stale_ms = 1234},
      {.value = MakeValue(std::string(kReferenceValueFrom, 'y')),
       .source = v1::SOURCE_FLEET,
       .ttl_remaining_ms = int64_t{1} << 40},
      {.value = MakeValue(std::string(kReferenceValueFrom + 1, 'z'))},  // no field after it
      {.value = MakeValue("neg"), .source = v1::SOURCE_HIT, .ttl_remaining_ms = -5},
  };
  for (const GetReplyFields& f : cases) {
    const std::string bytes = Bytes(GetReplyBytes(f));
    EXPECT_EQ(bytes, Protobuf(f)) << "value of " << (f.value == nullptr ? 0 : f.value.size())
                                  << " bytes";
    v1::GetResponse parsed;
    EXPECT_TRUE(parsed.ParseFromString(bytes));
  }
}

// A hit's reply copies the value it is lent, whatever its size, into one slice: the bytes are
// protobuf's, and stay right after the lender's buffer changes.
TEST(GetReplyTest, AHitsReplyIsOneSliceWithACopyOfTheValue) {
  for (const size_t size :
       {size_t{0}, size_t{1}, size_t{127}, size_t{128}, kReferenceValueFrom * 2}) {
    std::string lent(size, 'h');
    const GetReplyFields fields = {.source = v1::SOURCE_HIT, .ttl_remaining_ms = 59'999};
    const grpc::ByteBuffer reply = GetReplyBytesCopying(lent, fields);
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(reply.Dump(&slices).ok());
    EXPECT_EQ(slices.size(), 1u) << size << " bytes";
    lent.assign(size, 'X');  // the cache's buffer is reused once the read is over
    GetReplyFields same = fields;
    same.value = MakeValue(std::string(size, 'h'));
    EXPECT_EQ(Bytes(reply), Protobuf(same)) << size << " bytes";
  }
}

// A large value is sent from the Value's own bytes (shared by every caller of the load), not from
// a copy per reply; the reply keeps the value alive after the caller's reference is gone.
TEST(GetReplyTest, ALargeValueIsReferredToNotCopied) {
  grpc::ByteBuffer reply;
  const char* value_bytes = nullptr;
  {
    Value value = MakeValue(std::string(kReferenceValueFrom * 4, 'q'));
    value_bytes = value.data();
    reply = GetReplyBytes({.value = value, .source = v1::SOURCE_COALESCED});
  }
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(reply.Dump(&slices).ok());
  bool refers = false;
  for (const grpc::Slice& s : slices) {
    refers = refers || reinterpret_cast<const char*>(s.begin()) == value_bytes;
  }
  EXPECT_TRUE(refers) << "no slice of the reply is the value's own bytes";
  v1::GetResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(Bytes(reply)));
  EXPECT_EQ(parsed.value(), std::string(kReferenceValueFrom * 4, 'q'));
  EXPECT_EQ(parsed.source(), v1::SOURCE_COALESCED);
}

}  // namespace
}  // namespace flightcache
