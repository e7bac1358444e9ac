// ShardedCache: the bounded in-memory store of loaded values and negative (not-found) entries.
//
// Keys hash to one of N shards; each shard is a plain single-threaded CacheShard (cache_shard.h)
// behind its own reader-writer lock (StripedSharedMutex, internal/striped.h). A hit takes its
// shard's lock as a reader in a per-thread stripe, so hits write no line that another core
// writes: no global lock, and no shard lock word bouncing between cores either. The cache counts
// no hits or misses: its one caller, FlightCache, keeps the request ledger. The byte bound
// counts key + value + a fixed per-entry overhead (kCacheEntryOverheadBytes, cache_entry.h) and
// holds at every moment (each shard owns capacity/N). Entries expire at their TTL; expired entries
// read as misses and are dropped lazily, except that a value may be kept stale for
// `keep_expired_for` past its TTL, for LookupAllowingStale() (serving stale; cache_entry.h).
// Eviction keeps the hot set (see cache_shard.h for the policy and why).
//
// Values are immutable and shared (value.h): a hit returns a shared reference to the stored bytes
// without copying it under the lock.
//
// Thread-safety: thread-safe.
//
// Usage:
//   ShardedCache cache({.capacity_bytes = 256 << 20}, MonotonicClock::Get());
//   cache.Insert("k", MakeValue("v"), absl::Seconds(60));
//   if (auto hit = cache.Lookup("k")) Serve(*hit->value);
//   cache.Read("k", [&](const CacheEntryView& e) { if (!e.negative) out = e.value; });
#ifndef FLIGHTCACHE_SHARDED_CACHE_H_
#define FLIGHTCACHE_SHARDED_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flightcache/cache_entry.h"
#include "flightcache/clock.h"
#include "flightcache/value.h"

namespace flightcache {

struct CacheOptions {
  int64_t capacity_bytes = int64_t{256} << 20;
  int shard_count = 16;  // rounded up to a power of two
  // How long a value is kept past its TTL for serving stale (counted against capacity_bytes,
  // evicted first). FlightCache sets it from its stale options.
  absl::Duration keep_expired_for = absl::ZeroDuration();

  absl::Status Validate() const;
};

struct CacheStats {
  int64_t entries = 0;
  int64_t bytes = 0;
  int64_t evictions = 0;  // entries removed to make room (not expiry, not Erase)
};

class ShardedCache final {
 public:
  ShardedCache(CacheOptions options, const Clock& clock);
  ~ShardedCache();
  ShardedCache(const ShardedCache&) = delete;
  ShardedCache& operator=(const ShardedCache&) = delete;

  // A live entry, or nothing (missing or expired). Counted as an access by the eviction policy.
  std::optional<CacheHit> Lookup(std::string_view key);

  // Like Lookup(), but also finds a value kept stale past its TTL (CacheHit::stale()).
  std::optional<CacheHit> LookupAllowingStale(std::string_view key);

  // Like Lookup(), but instead of returning a shared reference to the value it calls `read` with
  // a view of the live entry while the shard is held for reading, so the caller can copy the
  // bytes where it needs them (e.g. into a response). This skips the Value's reference count,
  // which is a write to a line shared by every core reading that key. `read` must be short and
  // must not call into the cache. Returns false (and does not call `read`) on a miss.
  bool Read(std::string_view key, absl::FunctionRef<void(const CacheEntryView&)> read);

  // Stores `value` (null: a negative entry) until now + ttl, replacing any entry for `key`.
  // An entry larger than a shard's capacity is not stored. Reads more than `refresh_after` from
  // now report it refresh_due. REQUIRES: ttl > 0.
  void Insert(std::string_view key, Value value, absl::Duration ttl,
              absl::Duration refresh_after = absl::InfiniteDuration());

  // Removes the entry; true if a live one was there.
  bool Erase(std::string_view key);

  // Removes every entry, one shard at a time (an Insert racing with it may survive). Returns the
  // entries removed, expired ones included. For a fleet resubscription, after which the cache
  // may hold values whose invalidation was missed.
  int64_t Clear();

  CacheStats stats() const;

 private:
  struct Shard;
  // The shard that owns keys with this CacheShard::Hash().
  Shard& ShardFor(size_t hash) const;
  // Lookup() or LookupAllowingStale(): a live (or kept stale) entry; drops a dead one.
  std::optional<CacheHit> Find(std::string_view key, bool allow_stale);
  void DropExpired(Shard& shard, std::string_view key, size_t hash, absl::Time now);

  const Clock& clock_;
  int shard_mask_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SHARDED_CACHE_H_
