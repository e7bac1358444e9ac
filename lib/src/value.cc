#include "flightcache/value.h"

#include <cstring>
#include <new>

namespace flightcache {

Value Value::Copy(std::string_view bytes) {
  static_assert(alignof(Block) <= alignof(std::max_align_t));
  void* memory = ::operator new(sizeof(Block) + bytes.size());
  Value value;
  value.block_ = new (memory) Block{.refs{1}, .size = static_cast<uint32_t>(bytes.size())};
  // The bytes follow the block: copied as chars, not into a Block (which holds an atomic).
  if (!bytes.empty()) {
    std::memcpy(reinterpret_cast<char*>(value.block_ + 1), bytes.data(), bytes.size());
  }
  return value;
}

void Value::Release() {
  if (block_ == nullptr) return;
  // acq_rel: the last owner must see every other owner's reads finished before it frees.
  if (block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    block_->~Block();
    ::operator delete(block_);
  }
  block_ = nullptr;
}

}  // namespace flightcache
