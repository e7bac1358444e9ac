// Cache entries as readers see them: the types CacheShard and ShardedCache share, and what
// FlightCache::ReadHit shows its caller.
//
// A cache maps a key to an immutable Value (value.h) or to a negative (not-found) entry, each with
// an expiry time; every entry is charged its key and value bytes plus kCacheEntryOverheadBytes.
// An entry is fresh until its expiry. A value entry may then be kept, stale, for a while (for
// stale-while-revalidate and stale-if-error): lookups for fresh entries miss it, lookups that
// allow stale ones find it. A value entry may also carry a refresh-ahead point, after which
// reads report it as due for a refresh while it is still fresh.
//
// Thread-safety: plain values. A CacheHit holds a shared reference to the value and may outlive
// the cache's lock; a CacheEntryView is valid only during the call that handed it out.
#ifndef FLIGHTCACHE_CACHE_ENTRY_H_
#define FLIGHTCACHE_CACHE_ENTRY_H_

#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "flightcache/value.h"

namespace flightcache {

// Accounted for every entry besides its key and value bytes.
inline constexpr int64_t kCacheEntryOverheadBytes = 96;

struct CacheHit {
  Value value;  // null for a negative (not-found) entry
  absl::Time expires_at;
  // expires_at - the lookup's now: > 0 for a fresh entry, <= 0 for a stale one.
  absl::Duration ttl_remaining;
  bool refresh_due = false;  // past its refresh-ahead point (fresh entries only)
  bool negative() const { return value == nullptr; }
  bool stale() const { return ttl_remaining <= absl::ZeroDuration(); }
  // How long past its expiry a stale entry is; zero for a fresh one.
  absl::Duration stale_for() const { return stale() ? -ttl_remaining : absl::ZeroDuration(); }
};

// A live entry seen through a read callback, valid only during the call.
struct CacheEntryView {
  std::string_view value;  // the bytes; empty for a negative entry
  bool negative;           // a not-found entry
  absl::Duration ttl_remaining;
  bool refresh_due = false;  // past its refresh-ahead point
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_CACHE_ENTRY_H_
