#include "flightcache/sharded_cache.h"

#include <algorithm>
#include <utility>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "flightcache/option_checks.h"
#include "internal/cache_shard.h"
#include "internal/striped.h"

namespace flightcache {
namespace {

constexpr int kMaxShards = 1024;
// Far above any sensible cache; low enough that a typo (a size in bits, a stray digit) is caught.
constexpr int64_t kMaxCapacityBytes = int64_t{1} << 40;  // 1 TiB
constexpr absl::Duration kMaxKeep = absl::Hours(8760);   // a year, like the longest TTL

int RoundUpToPowerOfTwo(int n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

absl::Status CacheOptions::Validate() const {
  if (absl::Status s = CheckRange("capacity_bytes", capacity_bytes, 1, kMaxCapacityBytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckNonNegativeDuration("keep_expired_for", keep_expired_for, kMaxKeep);
      !s.ok()) {
    return s;
  }
  return CheckRange("shard_count", shard_count, 1, kMaxShards);
}

// Each shard is aligned to its own cache lines, so threads working on different shards never
// write to a shared line. Hits take the shard's lock as readers: with StripedSharedMutex they
// write only their own stripe, so concurrent hits on one shard do not contend either.
struct alignas(ABSL_CACHELINE_SIZE) ShardedCache::Shard {
  StripedSharedMutex mu;
  CacheShard cache ABSL_GUARDED_BY(mu);
};

ShardedCache::ShardedCache(CacheOptions options, const Clock& clock) : clock_(clock) {
  // Options are validated by the caller (Validate()); out-of-range values are clamped rather
  // than trusted.
  const int shard_count = RoundUpToPowerOfTwo(std::clamp(options.shard_count, 1, kMaxShards));
  shard_mask_ = shard_count - 1;
  shards_ = std::make_unique<Shard[]>(shard_count);
  // An even split, with the remainder spread one byte each, so the shards sum to the capacity.
  const int64_t capacity = std::max<int64_t>(0, options.capacity_bytes);
  const absl::Time now = clock_.Now();
  for (int i = 0; i < shard_count; ++i) {
    const int64_t share = capacity / shard_count + (i < capacity % shard_count ? 1 : 0);
    StripedWriterLock lock(&shards_[i].mu);
    shards_[i].cache.SetKeepExpiredFor(std::max(absl::ZeroDuration(), options.keep_expired_for));
    shards_[i].cache.SetCapacity(share, now);
  }
}

ShardedCache::~ShardedCache() = default;

// The shard comes from hash bits 32 and up: the shard's index probes with bits 7 and up of
// the same hash (absl's H1) and its ghost with the low bits, so these stay well spread
// within a shard for shards of up to a few million entries.
ShardedCache::Shard& ShardedCache::ShardFor(size_t hash) const {
  return shards_[(uint64_t{hash} >> 32) & static_cast<uint64_t>(shard_mask_)];
}

bool ShardedCache::Read(std::string_view key, absl::FunctionRef<void(const CacheEntryView&)> read) {
  const size_t hash = CacheShard::Hash(key);
  const absl::Time now = clock_.Now();
  Shard& shard = ShardFor(hash);
  bool expired = false;
  bool found;
  {
    StripedReaderLock lock(&shard.mu);
    found = shard.cache.SharedRead(key, hash, now, &expired, read);
  }
  if (expired) DropExpired(shard, key, hash, now);
  return found;
}

// Rare (once per entry and TTL): a reader found the entry expired. Drop it now rather than keep
// its bytes until a reload replaces it; it may have been replaced meanwhile, which
// RemoveExpired() checks under the exclusive lock.
void ShardedCache::DropExpired(Shard& shard, std::string_view key, size_t hash, absl::Time now) {
  CacheShard::ReleasedValues released;  // destroyed after the lock is released
  StripedWriterLock lock(&shard.mu);
  shard.cache.RemoveExpired(key, hash, now, &released);
}

std::optional<CacheHit> ShardedCache::Lookup(std::string_view key) {
  return Find(key, /*allow_stale=*/false);
}

std::optional<CacheHit> ShardedCache::LookupAllowingStale(std::string_view key) {
  return Find(key, /*allow_stale=*/true);
}

std::optional<CacheHit> ShardedCache::Find(std::string_view key, bool allow_stale) {
  const size_t hash = CacheShard::Hash(key);
  const absl::Time now = clock_.Now();
  Shard& shard = ShardFor(hash);
  bool expired = false;
  {
    StripedReaderLock lock(&shard.mu);
    std::optional<CacheHit> hit =
        allow_stale ? shard.cache.SharedLookupAllowingStale(key, hash, now, &expired)
                    : shard.cache.SharedLookup(key, hash, now, /*count_access=*/true, &expired);
    if (!expired) return hit;
  }
  DropExpired(shard, key, hash, now);
  return std::nullopt;
}

void ShardedCache::Insert(std::string_view key, Value value, absl::Duration ttl,
                          absl::Duration refresh_after) {
  const size_t hash = CacheShard::Hash(key);
  const absl::Time now = clock_.Now();
  Shard& shard = ShardFor(hash);
  // Evicted and replaced values (possibly the last reference to megabytes) are freed after the
  // lock is released; `released` is declared first so it is destroyed last.
  CacheShard::ReleasedValues released;
  StripedWriterLock lock(&shard.mu);
  shard.cache.Insert(key, hash, std::move(value), now + ttl, now, &released, now + refresh_after);
}

bool ShardedCache::Erase(std::string_view key) {
  const size_t hash = CacheShard::Hash(key);
  const absl::Time now = clock_.Now();
  Shard& shard = ShardFor(hash);
  CacheShard::ReleasedValues released;
  StripedWriterLock lock(&shard.mu);
  return shard.cache.Erase(key, hash, now, &released);
}

int64_t ShardedCache::Clear() {
  int64_t removed = 0;
  for (int i = 0; i <= shard_mask_; ++i) {
    Shard& shard = shards_[i];
    CacheShard::ReleasedValues released;  // destroyed after the lock is released
    StripedWriterLock lock(&shard.mu);
    removed += shard.cache.entries();
    shard.cache.Clear(&released);
  }
  return removed;
}

CacheStats ShardedCache::stats() const {
  // Shards are summed one lock at a time, so the totals are not a single atomic snapshot, but
  // each shard's part is consistent and bytes never exceeds the capacity.
  CacheStats stats;
  for (int i = 0; i <= shard_mask_; ++i) {
    Shard& shard = shards_[i];
    StripedReaderLock lock(&shard.mu);
    stats.entries += shard.cache.entries();
    stats.bytes += shard.cache.bytes();
    stats.evictions += shard.cache.evictions();
  }
  return stats;
}

}  // namespace flightcache
