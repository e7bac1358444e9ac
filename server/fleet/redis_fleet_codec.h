// How the fleet tier's entries and announcements are written as Redis strings.
//
// Entry (the value of <prefix>{tag}v:<key>): one kind byte, 'V' (a value) or 'N' (a cached
// NOT_FOUND), then the value's bytes ('N' has none). The remaining TTL is the Redis key's own
// (PTTL), not part of the bytes.
//
// Announcement (a message on <prefix>announce), binary safe and versioned:
//   version        1 byte, kAnnouncementVersion
//   sender         u32 length (big-endian) + bytes: the publishing sidecar's instance id, so that
//                  a sidecar can drop its own announcements
//   kind           1 byte: 'L' loaded, 'S' not shared, 'F' failed, 'I' invalidated
//   key            u32 length + bytes (any bytes)
//   kFailed only:  u32 absl::StatusCode (not OK), u32 length + the status message
// Nothing may follow. Decoding is defensive: a message from another version, cut short, with an
// unknown kind or code, or with bytes left over is an error, never a crash. A new field means a
// new version (a sidecar drops versions it does not know, and its waiters fall back to their
// own timeouts).
//
// Thread-safety: pure functions.
//
// Usage:
//   std::string message = EncodeAnnouncement(instance_id, announcement);
//   absl::StatusOr<DecodedAnnouncement> decoded = DecodeAnnouncement(message);
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_CODEC_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_CODEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flightcache/fleet_store.h"

namespace flightcache {

inline constexpr uint8_t kAnnouncementVersion = 1;

// 'V' + value, or 'N'.
std::string EncodeFleetEntry(const FleetEntry& entry);
// The entry stored as `bytes`, with `ttl_remaining`. INVALID_ARGUMENT if `bytes` is not an
// encoded entry (empty, an unknown kind, 'N' with bytes after it).
absl::StatusOr<FleetEntry> DecodeFleetEntry(absl::string_view bytes, absl::Duration ttl_remaining);

struct DecodedAnnouncement {
  std::string sender;
  FleetAnnouncement announcement;
};

// REQUIRES: announcement.kind != kFailed or !announcement.failure.ok(). (An OK failure is
// written as UNKNOWN, so that it still decodes as a failure.)
std::string EncodeAnnouncement(absl::string_view sender, const FleetAnnouncement& announcement);
// INVALID_ARGUMENT, saying what is wrong, for anything EncodeAnnouncement did not write.
absl::StatusOr<DecodedAnnouncement> DecodeAnnouncement(absl::string_view message);

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_CODEC_H_
