// Redis key names of the fleet tier: where one cache key's entry and lease live in Redis, and the
// announcement channel.
//
// Every Redis key of one cache key carries the same Redis Cluster hash tag, so that the Lua
// scripts that touch both (Publish, Invalidate) stay within one slot:
//   <prefix>{<tag>}v:<raw key>   the entry
//   <prefix>{<tag>}l:<raw key>   the lease
// Redis Cluster hashes the text between the first '{' and the next '}', so the tag cannot be the
// raw key (a '}' in it would end the tag early, and "{}" would hash the whole name): it is 16
// lowercase hex digits of a stable 64-bit hash of the raw key (FNV-1a), the same in every sidecar
// (absl::Hash is seeded per process). The raw key follows the tag verbatim, any bytes included:
// Redis keys are binary safe and only the first '{'...'}' matters.
//
// Thread-safety: pure functions.
//
// Usage:
//   RedisFleetKeys keys = MakeRedisFleetKeys("fc:", "user:42");
//   // keys.entry == "fc:{3f8c...}v:user:42", keys.lease == "fc:{3f8c...}l:user:42"
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_KEYS_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_KEYS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flightcache {

inline constexpr absl::string_view kDefaultFleetKeyPrefix = "fc:";

// FNV-1a 64 of `bytes`: stable across processes, machines and releases.
uint64_t StableKeyHash(absl::string_view bytes);

// The hash tag of `key` (without braces): StableKeyHash as 16 lowercase hex digits.
std::string FleetHashTag(absl::string_view key);

struct RedisFleetKeys {
  std::string entry;
  std::string lease;
};

// REQUIRES: ValidateFleetKeyPrefix(prefix).ok().
RedisFleetKeys MakeRedisFleetKeys(absl::string_view prefix, absl::string_view key);

// The channel every sidecar of the fleet announces on: <prefix>announce.
std::string FleetAnnounceChannel(absl::string_view prefix);

// A prefix must not contain '{' or '}' (it would move the hash tag) nor control characters (it
// shows in redis-cli and logs); it may be empty.
absl::Status ValidateFleetKeyPrefix(absl::string_view prefix);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_KEYS_H_
