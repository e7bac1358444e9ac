// CacheShard: one shard of ShardedCache, a byte-bounded map from key to an immutable Value (or a
// negative "not found" entry) with a per-entry expiry time.
//
// Eviction policy: S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
// SOSP 2023). New keys enter a small FIFO S (10% of the bytes); keys evicted from S without
// having been read again leave only a fingerprint in a ghost table G; keys read while in S, and
// keys that come back while G still remembers them, go to the main FIFO M. An entry at the tail
// of M that was read since it last passed the tail is moved back to M's head with its 2-bit
// counter decremented; otherwise it is evicted. Why this policy:
//   - scan resistance: a scan of one-hit keys only ever churns S; M (the hot set) is evicted
//     only when S is below its share, so no burst of cold keys can flush the hot set, which is
//     exactly what LRU and plain FIFO do;
//   - one-hit wonders (most keys in a cache trace) cost one pass through S and are gone;
//   - a cheap hit path: a hit finds the key and bumps a saturating 2-bit counter. No list is
//     relinked and nothing is written outside the entry, unlike LRU's move-to-front on every hit.
// Entries can be removed from the middle of a queue (Erase, replace, expired on read), so the
// queues are doubly linked lists threaded through slot indices rather than rings.
//
// Expiry: an entry is live (fresh) while now < expires_at. A value entry is then kept, stale, for
// keep_expired_for (SetKeepExpiredFor; 0 by default): fresh-only lookups miss it, but
// SharedLookupAllowingStale finds it, and it still counts against the capacity. Past that (a
// negative entry: at once) it is dead. Dead entries read as misses and are dropped when they are
// touched (lookup, insert of the same key, erase; SharedLookup leaves that to its caller); stale
// and dead entries alike go first, whatever their counter says, when eviction reaches them at a
// queue tail. There is no expiry index, so an expired entry in the middle of a queue keeps its
// bytes until one of those happens.
//
// Refresh ahead: Insert() may give a value a refresh_at point; reads of the fresh entry after it
// report refresh_due, so the caller can reload a key that keeps being read before it expires.
//
// Accounting: every entry is charged Charge(key, value) = key bytes + value bytes +
// kCacheEntryOverheadBytes (a negative entry: key + overhead). bytes() <= capacity()
// holds at every moment: room is made before an entry is linked in, and an entry whose charge
// exceeds the capacity is not stored. Evictions (entries removed to make room) and expirations
// are counted separately; Erase() and replacement count as neither.
//
// Memory: entries live in a vector of 56-byte slots (value, expiry, refresh point, key inline up
// to 16 bytes, links, counter), indexed by an absl::flat_hash_set<uint32_t> of slot numbers that
// hashes and compares through the slot's key, so a key is stored once. The ghost is a direct-mapped
// table of 32-bit fingerprints with at least as many buckets as entries. Estimated cache-owned
// bytes per entry with keys <= 16 bytes: 56 (slot) + 6..12 (index at absl's 7/16..7/8 load) + 4..8
// (ghost) = about 66..76 (measured: see docs/BENCHMARKS.md, memory); a longer key adds
// one heap block of its size rounded up by malloc. The Value itself (value.h) is caller-allocated,
// one block: for a 100-byte value a 128-byte malloc chunk (4 count + 4 length + 100 bytes).
//
// Thread-safety: not thread-safe; the caller synchronises (ShardedCache holds one mutex per
// shard), as with LevelDB's LRUCache.
//
// Lifetime: Values handed out stay valid for as long as the caller holds them. Values the shard
// drops during a call are moved into the caller's `released` list if one is given, so the caller
// can destroy them after releasing its lock.
//
// Usage:
//   CacheShard shard(1 << 20);
//   const size_t hash = CacheShard::Hash("k");
//   shard.Insert("k", hash, MakeValue("v"), clock.Now() + absl::Seconds(60), clock.Now());
//   if (auto hit = shard.Lookup("k", hash, clock.Now())) Use(*hit->value);
#ifndef FLIGHTCACHE_INTERNAL_CACHE_SHARD_H_
#define FLIGHTCACHE_INTERNAL_CACHE_SHARD_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flightcache/cache_entry.h"
#include "flightcache/value.h"

namespace flightcache {

class CacheShard final {
 public:
  // Values removed during one call, for the caller to destroy outside its lock.
  using ReleasedValues = absl::InlinedVector<Value, 4>;

  // The hash every method expects alongside its key. ShardedCache computes it once per call and
  // also picks the shard from it (from bits the shard's own tables do not depend on).
  //
  // Hashes as absl::string_view: Debian builds Abseil with its own string_view type, and
  // absl::Hash<std::string_view> would fall back to std::hash (slower, and a weaker mix).
  static size_t Hash(std::string_view key) {
    return absl::Hash<absl::string_view>{}(absl::string_view(key.data(), key.size()));
  }

  // The bytes an entry counts against the capacity.
  static int64_t Charge(std::string_view key, const Value& value) {
    return static_cast<int64_t>(key.size()) +
           (value ? static_cast<int64_t>(value.size()) : int64_t{0}) + kCacheEntryOverheadBytes;
  }

  // A capacity <= 0 stores nothing.
  explicit CacheShard(int64_t capacity_bytes = 0);
  ~CacheShard();
  // Not copyable or movable: the index's hash and equality functors point back at the shard.
  CacheShard(const CacheShard&) = delete;
  CacheShard& operator=(const CacheShard&) = delete;

  // In every method: REQUIRES: hash == Hash(key). `released`, if not null, receives the values
  // the call removed from the shard (evicted, expired, replaced or erased).

  // The live entry for `key`, counted as an access for eviction; an expired entry is dropped.
  std::optional<CacheHit> Lookup(std::string_view key, size_t hash, absl::Time now,
                                 ReleasedValues* released = nullptr);

  // The entry for `key` if it is fresh or kept stale (CacheHit::stale()), counted as an access; a
  // dead one is dropped. For serving stale values.
  std::optional<CacheHit> LookupAllowingStale(std::string_view key, size_t hash, absl::Time now,
                                              ReleasedValues* released = nullptr);

  // Like Lookup() but not counted as an access, so re-checks do not make a key look hot.
  std::optional<CacheHit> Peek(std::string_view key, size_t hash, absl::Time now,
                               ReleasedValues* released = nullptr);

  // Lookup() (count_access) or Peek() for readers that share the shard under a reader lock: it
  // changes nothing but the entry's access counter, with a relaxed atomic. An expired entry reads
  // as a miss and stays stored; *expired (if not null) is set so that the caller can drop it
  // with RemoveExpired() under an exclusive lock.
  std::optional<CacheHit> SharedLookup(std::string_view key, size_t hash, absl::Time now,
                                       bool count_access, bool* expired = nullptr) const;

  // SharedLookup() (counted as an access) that also finds a stale entry kept past its expiry.
  std::optional<CacheHit> SharedLookupAllowingStale(std::string_view key, size_t hash,
                                                    absl::Time now, bool* expired = nullptr) const;

  // SharedLookup() that hands `read` a view of the entry instead of a copy of its Value.
  // Returns true if a live entry was found (and `read` called).
  bool SharedRead(std::string_view key, size_t hash, absl::Time now, bool* expired,
                  absl::FunctionRef<void(const CacheEntryView&)> read) const;

  // Removes the entry for `key` if it is dead (expired and past its keep window) by `now`; true if
  // it did.
  bool RemoveExpired(std::string_view key, size_t hash, absl::Time now,
                     ReleasedValues* released = nullptr);

  // Stores `value` (null: a negative entry) until `expires_at`, replacing any entry for `key`.
  // A replaced entry that was not dead (fresh or kept stale) passes on its queue and access count,
  // so refreshing a hot key does not demote it. If the charge exceeds capacity() or
  // expires_at <= now, nothing is stored and any previous entry for `key` is removed (so a stale
  // value is never left behind). Reads after `refresh_at` report the entry refresh_due.
  void Insert(std::string_view key, size_t hash, Value value, absl::Time expires_at, absl::Time now,
              ReleasedValues* released = nullptr, absl::Time refresh_at = absl::InfiniteFuture());

  // Removes the entry for `key`; true if it was not dead (fresh or kept stale).
  bool Erase(std::string_view key, size_t hash, absl::Time now, ReleasedValues* released = nullptr);

  // Removes every entry (counted as erased, not evicted). The ghost keeps its fingerprints.
  void Clear(ReleasedValues* released = nullptr);

  // How long a value entry is kept, stale, past its expiry (>= 0). Applies to stored entries too.
  void SetKeepExpiredFor(absl::Duration keep);

  // Changes the capacity, evicting as needed to fit it. A capacity <= 0 becomes 0.
  void SetCapacity(int64_t capacity_bytes, absl::Time now, ReleasedValues* released = nullptr);

  int64_t capacity() const { return capacity_; }
  int64_t bytes() const { return bytes_; }
  // Stored entries, including stale and dead ones not dropped yet.
  int64_t entries() const { return static_cast<int64_t>(index_.size()); }
  // Entries removed to make room.
  int64_t evictions() const { return evictions_; }
  // Expired (stale or dead) entries dropped (on access or when eviction reached them).
  int64_t expirations() const { return expirations_; }

  // Walks every structure and checks they agree (byte and entry totals equal the sum over the
  // queues, links are consistent, the index finds every entry, bytes <= capacity). O(entries);
  // for tests and debugging.
  absl::Status CheckInvariants() const;

 private:
  static constexpr uint32_t kNil = ~uint32_t{0};
  static constexpr uint32_t kInlineKeyBytes = 16;
  static constexpr uint8_t kMaxFreq = 3;

  enum class Queue : uint8_t { kFree, kSmall, kMain };
  enum class Removal : uint8_t { kEvicted, kExpired, kErased, kReplaced };

  // One entry. Keys up to kInlineKeyBytes live inside the slot (no allocation); longer keys in a
  // heap block owned by the slot. Slots are plain data: the shard frees keys explicitly.
  struct Slot {
    Value value;             // null for a negative entry (and for a free slot)
    int64_t expires_ns = 0;  // absl::ToUnixNanos(expires_at), saturated
    int64_t refresh_ns = 0;  // absl::ToUnixNanos(refresh_at), saturated
    union {
      char* heap;
      char inline_bytes[kInlineKeyBytes];
    } key = {nullptr};
    uint32_t key_size = 0;
    uint32_t newer = kNil;  // towards the queue's head (most recently inserted)
    uint32_t older = kNil;  // towards the queue's tail; for a free slot, the next free slot
    // Saturating access counter, 0..kMaxFreq. Readers under a shared lock bump it through
    // std::atomic_ref (hence mutable); writers hold the shard exclusively and use it plainly.
    mutable uint8_t freq = 0;
    Queue queue = Queue::kFree;
  };

  struct Fifo {
    uint32_t newest = kNil;
    uint32_t oldest = kNil;
    int64_t count = 0;
    int64_t bytes = 0;
  };

  // What the index is probed with: a key and its precomputed hash.
  struct HashedKey {
    std::string_view key;
    size_t hash;
  };
  struct IndexHash {
    using is_transparent = void;
    size_t operator()(uint32_t slot) const { return Hash(shard->KeyOf(slot)); }
    size_t operator()(const HashedKey& k) const { return k.hash; }
    const CacheShard* shard;
  };
  struct IndexEq {
    using is_transparent = void;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(uint32_t a, const HashedKey& b) const { return shard->KeyOf(a) == b.key; }
    bool operator()(const HashedKey& a, uint32_t b) const { return a.key == shard->KeyOf(b); }
    const CacheShard* shard;
  };
  using Index = absl::flat_hash_set<uint32_t, IndexHash, IndexEq>;

  std::string_view KeyOf(uint32_t s) const { return KeyOf(slots_[s]); }
  static std::string_view KeyOf(const Slot& slot) {
    return std::string_view(
        slot.key_size <= kInlineKeyBytes ? slot.key.inline_bytes : slot.key.heap, slot.key_size);
  }
  static int64_t ChargeOf(const Slot& slot) { return Charge(KeyOf(slot), slot.value); }
  // The fresh slot for `key` (or also a stale one, if `allow_stale`), counted as an access if
  // `count_access`, or null; a dead one sets *expired. Changes nothing but the slot's atomic
  // access counter.
  const Slot* FindLive(std::string_view key, size_t hash, int64_t now_ns, bool count_access,
                       bool* expired, bool allow_stale = false) const;
  // Past its expiry and its keep window: never to be read again.
  bool Dead(const Slot& slot, int64_t now_ns) const;
  static CacheHit HitOf(const Slot& slot, int64_t now_ns);

  void MakeRoom(int64_t charge, int64_t now_ns, ReleasedValues* released);
  void EvictOne(int64_t now_ns, ReleasedValues* released);
  void Remove(uint32_t s, Index::iterator it, Removal why, ReleasedValues* released);
  void RemoveHashed(uint32_t s, size_t hash, Removal why, ReleasedValues* released);
  uint32_t AllocateSlot(std::string_view key);
  Fifo& FifoOf(Queue q) { return q == Queue::kSmall ? small_ : main_; }
  void PushNewest(Queue q, uint32_t s);
  void Unlink(uint32_t s);
  void GhostAdd(size_t hash);
  bool GhostTake(size_t hash);
  void GrowGhost();
  absl::Status CheckFifo(Queue q, int64_t* count, int64_t* bytes) const;

  int64_t capacity_ = 0;
  int64_t small_capacity_ = 0;  // S's share: 10% of capacity_
  int64_t keep_expired_ns_ = 0;
  int64_t bytes_ = 0;
  int64_t evictions_ = 0;
  int64_t expirations_ = 0;
  std::vector<Slot> slots_;
  uint32_t free_head_ = kNil;  // free slots, chained through Slot::older
  Index index_{0, IndexHash{this}, IndexEq{this}};
  Fifo small_;
  Fifo main_;
  // Direct-mapped ghost: bucket hash & mask holds the fingerprint of the last key evicted from S
  // that landed there (0: empty). A remembered key is forgotten after, on average, as many later
  // S evictions as there are buckets, like a FIFO ghost of that length, at 4 bytes per bucket
  // and with no list to maintain. A rare fingerprint collision only admits a key straight to M.
  std::vector<uint32_t> ghost_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_INTERNAL_CACHE_SHARD_H_
