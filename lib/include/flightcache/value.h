// Value: an immutable byte string shared by the cache and every reader of it.
//
// One allocation holds an intrusive reference count, the length and the bytes, and a Value is
// one pointer. std::make_shared<const std::string> takes two allocations (control block and
// string object, then the characters) and std::make_shared<char[]> has a 24-byte control block
// plus padding: for the 100-byte values of the memory benchmark these cost 176 and 160 bytes of
// malloc chunks, this 128 (8 + 100 bytes, rounded up by malloc), and a cache slot holds 8 bytes
// for it instead of 16.
//
// A default-constructed or null Value means "no value": the cache uses it for negative
// (not-found) entries. A non-null Value may still hold zero bytes.
//
// Thread-safety: like std::shared_ptr: the bytes never change, so any number of threads may read
// one Value; copying and destroying copies in different threads is safe.
//
// Usage:
//   Value v = MakeValue("payload");
//   Send(v.view());            // or *v
//   if (v == nullptr) NotFound();
#ifndef FLIGHTCACHE_VALUE_H_
#define FLIGHTCACHE_VALUE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace flightcache {

class Value final {
 public:
  // The largest value: lengths are kept in 32 bits (protobuf messages are limited to 2 GiB).
  static constexpr size_t kMaxBytes = (size_t{1} << 31) - 1;

  Value() = default;
  Value(std::nullptr_t) {}  // NOLINT(google-explicit-constructor): null means "no value"

  // Copies `bytes` into a new block. REQUIRES: bytes.size() <= kMaxBytes.
  static Value Copy(std::string_view bytes);

  Value(const Value& other) : block_(other.block_) {
    if (block_ != nullptr) block_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  Value(Value&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
  Value& operator=(Value other) noexcept {
    std::swap(block_, other.block_);
    return *this;
  }
  ~Value() { Release(); }

  // REQUIRES for the accessors: *this != nullptr.
  std::string_view view() const { return std::string_view(data(), size()); }
  std::string_view operator*() const { return view(); }
  const char* data() const { return reinterpret_cast<const char*>(block_ + 1); }
  size_t size() const { return block_->size; }

  explicit operator bool() const { return block_ != nullptr; }
  friend bool operator==(const Value& value, std::nullptr_t) { return value.block_ == nullptr; }
  // Whether two Values share one block (not whether their bytes are equal).
  bool SharesBytesWith(const Value& other) const { return block_ == other.block_; }

 private:
  // The bytes follow the header in the same allocation.
  struct Block {
    std::atomic<uint32_t> refs;
    uint32_t size;
  };

  void Release();

  Block* block_ = nullptr;
};

inline Value MakeValue(std::string_view bytes) { return Value::Copy(bytes); }

}  // namespace flightcache

#endif  // FLIGHTCACHE_VALUE_H_
