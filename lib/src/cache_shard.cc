#include "internal/cache_shard.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

constexpr int64_t kNeverNs = std::numeric_limits<int64_t>::max();

// absl::Time as int64 nanoseconds, saturating, so a slot keeps 8 bytes of expiry instead of 16.
int64_t ToNanos(absl::Time t) {
  constexpr absl::Time kLatest = absl::FromUnixNanos(kNeverNs);
  constexpr absl::Time kEarliest = absl::FromUnixNanos(std::numeric_limits<int64_t>::min());
  if (t >= kLatest) return kNeverNs;
  if (t <= kEarliest) return std::numeric_limits<int64_t>::min();
  return absl::ToUnixNanos(t);
}

absl::Time FromNanos(int64_t ns) {
  return ns == kNeverNs ? absl::InfiniteFuture() : absl::FromUnixNanos(ns);
}

// The ghost stores a 32-bit fingerprint taken from the hash's high bits after a multiplicative
// mix, so it is independent of the low bits that pick the bucket; 0 marks an empty bucket.
uint32_t Fingerprint(size_t hash) {
  const uint32_t fp = static_cast<uint32_t>((uint64_t{hash} * 0x9E3779B97F4A7C15u) >> 32);
  return fp == 0 ? 1 : fp;
}

constexpr size_t kMinGhostBuckets = 16;

}  // namespace

CacheShard::CacheShard(int64_t capacity_bytes)
    : capacity_(std::max<int64_t>(0, capacity_bytes)), small_capacity_(capacity_ / 10) {
  // The per-entry memory estimate in the header assumes this layout.
  static_assert(sizeof(Slot) == 56, "Slot grew: update the memory estimate in cache_shard.h");
}

CacheShard::~CacheShard() {
  for (Slot& slot : slots_) {
    if (slot.queue != Queue::kFree && slot.key_size > kInlineKeyBytes) delete[] slot.key.heap;
  }
}

std::optional<CacheHit> CacheShard::Lookup(std::string_view key, size_t hash, absl::Time now,
                                           ReleasedValues* released) {
  bool expired = false;
  std::optional<CacheHit> hit = SharedLookup(key, hash, now, /*count_access=*/true, &expired);
  if (expired) RemoveExpired(key, hash, now, released);
  return hit;
}

std::optional<CacheHit> CacheShard::Peek(std::string_view key, size_t hash, absl::Time now,
                                         ReleasedValues* released) {
  bool expired = false;
  std::optional<CacheHit> hit = SharedLookup(key, hash, now, /*count_access=*/false, &expired);
  if (expired) RemoveExpired(key, hash, now, released);
  return hit;
}

std::optional<CacheHit> CacheShard::LookupAllowingStale(std::string_view key, size_t hash,
                                                        absl::Time now, ReleasedValues* released) {
  bool expired = false;
  std::optional<CacheHit> hit = SharedLookupAllowingStale(key, hash, now, &expired);
  if (expired) RemoveExpired(key, hash, now, released);
  return hit;
}

bool CacheShard::Dead(const Slot& slot, int64_t now_ns) const {
  if (slot.value == nullptr || keep_expired_ns_ == 0) return slot.expires_ns <= now_ns;
  // Saturating: an entry that never expires is never dead.
  if (slot.expires_ns > kNeverNs - keep_expired_ns_) return false;
  return slot.expires_ns + keep_expired_ns_ <= now_ns;
}

CacheHit CacheShard::HitOf(const Slot& slot, int64_t now_ns) {
  return CacheHit{slot.value, FromNanos(slot.expires_ns),
                  absl::Nanoseconds(slot.expires_ns - now_ns),
                  /*refresh_due=*/slot.expires_ns > now_ns && slot.refresh_ns <= now_ns};
}

const CacheShard::Slot* CacheShard::FindLive(std::string_view key, size_t hash, int64_t now_ns,
                                             bool count_access, bool* expired,
                                             bool allow_stale) const {
  const auto it = index_.find(HashedKey{key, hash});
  if (it == index_.end()) return nullptr;
  const Slot& slot = slots_[*it];
  if (slot.expires_ns <= now_ns) {
    if (Dead(slot, now_ns)) {
      if (expired != nullptr) *expired = true;
      return nullptr;
    }
    if (!allow_stale) return nullptr;
  }
  // The whole cost of a hit for the eviction policy: no relinking, and a write only while the
  // counter is below its cap (a hot key's line stays shared between cores). Two readers racing
  // on the increment may count one access; the counter is a hint.
  if (count_access) {
    std::atomic_ref<uint8_t> freq(slot.freq);
    const uint8_t seen = freq.load(std::memory_order_relaxed);
    if (seen < kMaxFreq) freq.store(seen + 1, std::memory_order_relaxed);
  }
  return &slot;
}

std::optional<CacheHit> CacheShard::SharedLookup(std::string_view key, size_t hash, absl::Time now,
                                                 bool count_access, bool* expired) const {
  const int64_t now_ns = ToNanos(now);
  const Slot* slot = FindLive(key, hash, now_ns, count_access, expired);
  if (slot == nullptr) return std::nullopt;
  return HitOf(*slot, now_ns);
}

std::optional<CacheHit> CacheShard::SharedLookupAllowingStale(std::string_view key, size_t hash,
                                                              absl::Time now, bool* expired) const {
  const int64_t now_ns = ToNanos(now);
  const Slot* slot =
      FindLive(key, hash, now_ns, /*count_access=*/true, expired, /*allow_stale=*/true);
  if (slot == nullptr) return std::nullopt;
  return HitOf(*slot, now_ns);
}

bool CacheShard::SharedRead(std::string_view key, size_t hash, absl::Time now, bool* expired,
                            absl::FunctionRef<void(const CacheEntryView&)> read) const {
  const int64_t now_ns = ToNanos(now);
  const Slot* slot = FindLive(key, hash, now_ns, /*count_access=*/true, expired);
  if (slot == nullptr) return false;
  const bool negative = slot->value == nullptr;
  read(CacheEntryView{negative ? std::string_view() : slot->value.view(), negative,
                      absl::Nanoseconds(slot->expires_ns - now_ns),
                      /*refresh_due=*/slot->refresh_ns <= now_ns});
  return true;
}

bool CacheShard::RemoveExpired(std::string_view key, size_t hash, absl::Time now,
                               ReleasedValues* released) {
  const auto it = index_.find(HashedKey{key, hash});
  if (it == index_.end() || !Dead(slots_[*it], ToNanos(now))) return false;
  Remove(*it, it, Removal::kExpired, released);
  return true;
}

void CacheShard::Insert(std::string_view key, size_t hash, Value value, absl::Time expires_at,
                        absl::Time now, ReleasedValues* released, absl::Time refresh_at) {
  const int64_t now_ns = ToNanos(now);
  const int64_t expires_ns = ToNanos(expires_at);

  // A live entry being replaced passes on its place in the policy; it is unlinked first so that
  // making room below cannot pick it.
  bool replacing = false;
  Queue queue = Queue::kSmall;
  uint8_t freq = 0;
  if (const auto it = index_.find(HashedKey{key, hash}); it != index_.end()) {
    const uint32_t s = *it;
    if (!Dead(slots_[s], now_ns)) {
      replacing = true;
      queue = slots_[s].queue;
      freq = slots_[s].freq;
      Remove(s, it, Removal::kReplaced, released);
    } else {
      Remove(s, it, Removal::kExpired, released);
    }
  }

  const int64_t charge = Charge(key, value);
  if (charge > capacity_ || expires_ns <= now_ns) {
    if (released != nullptr && value != nullptr) released->push_back(std::move(value));
    return;
  }
  // Admission is decided on arrival, before the evictions this insert causes can overwrite the
  // key's ghost bucket.
  if (!replacing && GhostTake(hash)) queue = Queue::kMain;
  MakeRoom(charge, now_ns, released);

  const uint32_t s = AllocateSlot(key);
  Slot& slot = slots_[s];
  slot.value = std::move(value);
  slot.expires_ns = expires_ns;
  slot.refresh_ns = ToNanos(refresh_at);
  slot.freq = freq;
  PushNewest(queue, s);
  FifoOf(queue).bytes += charge;
  bytes_ += charge;
  index_.lazy_emplace(HashedKey{key, hash}, [s](const Index::constructor& ctor) { ctor(s); });
  if (index_.size() > ghost_.size()) GrowGhost();
}

bool CacheShard::Erase(std::string_view key, size_t hash, absl::Time now,
                       ReleasedValues* released) {
  const auto it = index_.find(HashedKey{key, hash});
  if (it == index_.end()) return false;
  const uint32_t s = *it;
  const bool live = !Dead(slots_[s], ToNanos(now));
  Remove(s, it, live ? Removal::kErased : Removal::kExpired, released);
  return live;
}

void CacheShard::Clear(ReleasedValues* released) {
  for (Fifo* fifo : {&small_, &main_}) {
    while (fifo->oldest != kNil) {
      const uint32_t s = fifo->oldest;
      RemoveHashed(s, Hash(KeyOf(s)), Removal::kErased, released);
    }
  }
}

void CacheShard::SetKeepExpiredFor(absl::Duration keep) {
  keep_expired_ns_ = std::max<int64_t>(0, ToNanos(absl::UnixEpoch() + keep));
}

void CacheShard::SetCapacity(int64_t capacity_bytes, absl::Time now, ReleasedValues* released) {
  capacity_ = std::max<int64_t>(0, capacity_bytes);
  small_capacity_ = capacity_ / 10;
  MakeRoom(0, ToNanos(now), released);
}

void CacheShard::MakeRoom(int64_t charge, int64_t now_ns, ReleasedValues* released) {
  while (bytes_ + charge > capacity_ && !index_.empty()) EvictOne(now_ns, released);
}

// One S3-FIFO eviction: loops over promotions (S -> M) and second chances (M -> M) until exactly
// one entry has left the shard. Terminates: each promotion shrinks S, and each second chance
// decrements a counter that only hits can raise.
void CacheShard::EvictOne(int64_t now_ns, ReleasedValues* released) {
  while (true) {
    // S is evicted from while it holds at least its share, so a stream of new keys churns S and
    // leaves M alone; M gives way only when S is small (or S is all there is).
    const bool from_small =
        small_.oldest != kNil && (small_.bytes >= small_capacity_ || main_.oldest == kNil);
    const uint32_t s = from_small ? small_.oldest : main_.oldest;
    if (s == kNil) return;
    Slot& slot = slots_[s];
    if (slot.expires_ns <= now_ns) {
      // Expired entries (kept stale or dead) go first, whatever their counter says.
      RemoveHashed(s, Hash(KeyOf(slot)), Removal::kExpired, released);
      return;
    }
    if (slot.freq > 0) {
      // Read since it entered S, or since it last passed M's tail: keep it, in M.
      const int64_t charge = ChargeOf(slot);
      FifoOf(slot.queue).bytes -= charge;
      Unlink(s);
      slot.freq = from_small ? 0 : slot.freq - 1;
      PushNewest(Queue::kMain, s);
      main_.bytes += charge;
      continue;
    }
    const size_t hash = Hash(KeyOf(slot));
    if (from_small) GhostAdd(hash);  // remember it, in case it comes back soon
    RemoveHashed(s, hash, Removal::kEvicted, released);
    return;
  }
}

void CacheShard::RemoveHashed(uint32_t s, size_t hash, Removal why, ReleasedValues* released) {
  const auto it = index_.find(HashedKey{KeyOf(s), hash});
  Remove(s, it, why, released);
}

void CacheShard::Remove(uint32_t s, Index::iterator it, Removal why, ReleasedValues* released) {
  Slot& slot = slots_[s];
  const int64_t charge = ChargeOf(slot);
  FifoOf(slot.queue).bytes -= charge;
  bytes_ -= charge;
  Unlink(s);
  index_.erase(it);
  if (why == Removal::kEvicted) ++evictions_;
  if (why == Removal::kExpired) ++expirations_;

  if (released != nullptr && slot.value != nullptr) {
    released->push_back(std::move(slot.value));
  }
  slot.value = nullptr;
  if (slot.key_size > kInlineKeyBytes) delete[] slot.key.heap;
  slot.key.heap = nullptr;
  slot.key_size = 0;
  slot.freq = 0;
  slot.queue = Queue::kFree;
  slot.newer = kNil;
  slot.older = free_head_;
  free_head_ = s;
}

uint32_t CacheShard::AllocateSlot(std::string_view key) {
  uint32_t s;
  if (free_head_ != kNil) {
    s = free_head_;
    free_head_ = slots_[s].older;
  } else {
    s = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[s];
  slot.key_size = static_cast<uint32_t>(key.size());
  char* dest = slot.key.inline_bytes;
  if (key.size() > kInlineKeyBytes) dest = slot.key.heap = new char[key.size()];
  if (!key.empty()) std::memcpy(dest, key.data(), key.size());
  slot.newer = kNil;
  slot.older = kNil;
  return s;
}

void CacheShard::PushNewest(Queue q, uint32_t s) {
  Fifo& fifo = FifoOf(q);
  Slot& slot = slots_[s];
  slot.queue = q;
  slot.newer = kNil;
  slot.older = fifo.newest;
  if (fifo.newest != kNil) {
    slots_[fifo.newest].newer = s;
  } else {
    fifo.oldest = s;
  }
  fifo.newest = s;
  ++fifo.count;
}

void CacheShard::Unlink(uint32_t s) {
  Slot& slot = slots_[s];
  Fifo& fifo = FifoOf(slot.queue);
  if (slot.newer != kNil) {
    slots_[slot.newer].older = slot.older;
  } else {
    fifo.newest = slot.older;
  }
  if (slot.older != kNil) {
    slots_[slot.older].newer = slot.newer;
  } else {
    fifo.oldest = slot.newer;
  }
  slot.newer = kNil;
  slot.older = kNil;
  --fifo.count;
}

void CacheShard::GhostAdd(size_t hash) {
  if (ghost_.empty()) return;
  ghost_[hash & (ghost_.size() - 1)] = Fingerprint(hash);
}

bool CacheShard::GhostTake(size_t hash) {
  if (ghost_.empty()) return false;
  uint32_t& bucket = ghost_[hash & (ghost_.size() - 1)];
  if (bucket != Fingerprint(hash)) return false;
  bucket = 0;
  return true;
}

// Doubles the ghost (at least as many buckets as entries, as S3-FIFO sizes its ghost like its
// main queue). Bucket i of the old table is the only old candidate for buckets i and i + old
// size, so copying it to both keeps every remembered key findable.
void CacheShard::GrowGhost() {
  const size_t old_size = ghost_.size();
  size_t new_size = std::max(kMinGhostBuckets, old_size);
  while (new_size < index_.size()) new_size *= 2;
  if (new_size == old_size) new_size *= 2;
  ghost_.resize(new_size, 0);
  if (old_size == 0) return;
  for (size_t i = old_size; i < new_size; ++i) ghost_[i] = ghost_[i & (old_size - 1)];
}

absl::Status CacheShard::CheckFifo(Queue q, int64_t* count, int64_t* bytes) const {
  const Fifo& fifo = q == Queue::kSmall ? small_ : main_;
  const char* name = q == Queue::kSmall ? "small" : "main";
  *count = 0;
  *bytes = 0;
  uint32_t newer = kNil;
  for (uint32_t s = fifo.newest; s != kNil; s = slots_[s].older) {
    if (s >= slots_.size()) return absl::InternalError(absl::StrCat(name, ": bad slot ", s));
    const Slot& slot = slots_[s];
    if (slot.queue != q) return absl::InternalError(absl::StrCat(name, ": slot ", s, " misfiled"));
    if (slot.newer != newer) return absl::InternalError(absl::StrCat(name, ": bad link at ", s));
    if (slot.freq > kMaxFreq) return absl::InternalError(absl::StrCat(name, ": bad freq"));
    const auto it = index_.find(HashedKey{KeyOf(slot), Hash(KeyOf(slot))});
    if (it == index_.end() || *it != s) {
      return absl::InternalError(absl::StrCat(name, ": slot ", s, " not indexed"));
    }
    ++*count;
    *bytes += ChargeOf(slot);
    if (*count > static_cast<int64_t>(slots_.size())) {
      return absl::InternalError(absl::StrCat(name, ": cycle"));
    }
    newer = s;
  }
  if (fifo.oldest != newer) return absl::InternalError(absl::StrCat(name, ": bad tail"));
  if (*count != fifo.count || *bytes != fifo.bytes) {
    return absl::InternalError(absl::StrCat(name, ": totals ", fifo.count, "/", fifo.bytes,
                                            " but walked ", *count, "/", *bytes));
  }
  return absl::OkStatus();
}

absl::Status CacheShard::CheckInvariants() const {
  int64_t small_count, small_bytes, main_count, main_bytes;
  if (absl::Status s = CheckFifo(Queue::kSmall, &small_count, &small_bytes); !s.ok()) return s;
  if (absl::Status s = CheckFifo(Queue::kMain, &main_count, &main_bytes); !s.ok()) return s;
  if (small_bytes + main_bytes != bytes_) {
    return absl::InternalError(
        absl::StrCat("bytes ", bytes_, " but entries sum to ", small_bytes + main_bytes));
  }
  if (small_count + main_count != entries()) {
    return absl::InternalError(
        absl::StrCat("index has ", entries(), " entries but queues ", small_count + main_count));
  }
  if (bytes_ > capacity_) {
    return absl::InternalError(absl::StrCat("bytes ", bytes_, " > capacity ", capacity_));
  }
  int64_t free_count = 0;
  for (uint32_t s = free_head_; s != kNil; s = slots_[s].older) {
    if (slots_[s].queue != Queue::kFree || slots_[s].value != nullptr) {
      return absl::InternalError(absl::StrCat("free list holds used slot ", s));
    }
    if (++free_count > static_cast<int64_t>(slots_.size())) {
      return absl::InternalError("free list cycle");
    }
  }
  if (free_count + entries() != static_cast<int64_t>(slots_.size())) {
    return absl::InternalError(
        absl::StrCat(slots_.size(), " slots but ", free_count, " free and ", entries(), " used"));
  }
  return absl::OkStatus();
}

}  // namespace flightcache
