#include "server/fleet/redis_fleet_keys.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flightcache {

uint64_t StableKeyHash(absl::string_view bytes) {
  constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
  constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
  uint64_t hash = kFnvOffsetBasis;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= kFnvPrime;
  }
  return hash;
}

std::string FleetHashTag(absl::string_view key) {
  return absl::StrFormat("%016x", StableKeyHash(key));
}

RedisFleetKeys MakeRedisFleetKeys(absl::string_view prefix, absl::string_view key) {
  const std::string tag = FleetHashTag(key);
  return {.entry = absl::StrCat(prefix, "{", tag, "}v:", key),
          .lease = absl::StrCat(prefix, "{", tag, "}l:", key)};
}

std::string FleetAnnounceChannel(absl::string_view prefix) {
  return absl::StrCat(prefix, "announce");
}

absl::Status ValidateFleetKeyPrefix(absl::string_view prefix) {
  for (const char c : prefix) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '{' || c == '}' || u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("fleet key prefix \"", absl::CHexEscape(prefix),
                       "\" must not contain '{', '}' or control characters"));
    }
  }
  return absl::OkStatus();
}

}  // namespace flightcache
