#include "server/fleet/redis_fleet_codec.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

constexpr char kEntryValue = 'V';
constexpr char kEntryNotFound = 'N';

constexpr char kKindLoaded = 'L';
constexpr char kKindNotShared = 'S';
constexpr char kKindFailed = 'F';
constexpr char kKindInvalidated = 'I';

char KindByte(FleetAnnouncement::Kind kind) {
  switch (kind) {
    case FleetAnnouncement::Kind::kLoaded:
      return kKindLoaded;
    case FleetAnnouncement::Kind::kNotShared:
      return kKindNotShared;
    case FleetAnnouncement::Kind::kFailed:
      return kKindFailed;
    case FleetAnnouncement::Kind::kInvalidated:
      return kKindInvalidated;
  }
  return kKindInvalidated;  // unreachable: every kind is listed
}

std::optional<FleetAnnouncement::Kind> KindFromByte(char byte) {
  switch (byte) {
    case kKindLoaded:
      return FleetAnnouncement::Kind::kLoaded;
    case kKindNotShared:
      return FleetAnnouncement::Kind::kNotShared;
    case kKindFailed:
      return FleetAnnouncement::Kind::kFailed;
    case kKindInvalidated:
      return FleetAnnouncement::Kind::kInvalidated;
    default:
      return std::nullopt;
  }
}

void AppendU32(std::string& out, uint32_t n) {
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
}

void AppendBytes(std::string& out, absl::string_view bytes) {
  AppendU32(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes.data(), bytes.size());
}

// Reads a message front to back; every read fails (returns false) rather than run past the end.
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  bool Byte(char& out) {
    if (in_.empty()) return false;
    out = in_.front();
    in_.remove_prefix(1);
    return true;
  }
  bool U32(uint32_t& out) {
    if (in_.size() < 4) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) out = (out << 8) | static_cast<unsigned char>(in_[i]);
    in_.remove_prefix(4);
    return true;
  }
  bool Bytes(std::string& out) {
    uint32_t size = 0;
    if (!U32(size) || size > in_.size()) return false;
    out.assign(in_.data(), size);
    in_.remove_prefix(size);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed fleet announcement: ", what));
}

}  // namespace

std::string EncodeFleetEntry(const FleetEntry& entry) {
  if (entry.not_found) return std::string(1, kEntryNotFound);
  std::string out;
  out.reserve(1 + entry.value.size());
  out.push_back(kEntryValue);
  out.append(entry.value);
  return out;
}

absl::StatusOr<FleetEntry> DecodeFleetEntry(absl::string_view bytes, absl::Duration ttl_remaining) {
  if (bytes.empty()) return absl::InvalidArgumentError("malformed fleet entry: empty");
  FleetEntry entry;
  entry.ttl_remaining = ttl_remaining;
  switch (bytes.front()) {
    case kEntryValue:
      entry.value.assign(bytes.data() + 1, bytes.size() - 1);
      return entry;
    case kEntryNotFound:
      if (bytes.size() != 1) {
        return absl::InvalidArgumentError("malformed fleet entry: NOT_FOUND with a value");
      }
      entry.not_found = true;
      return entry;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("malformed fleet entry: unknown kind ", static_cast<int>(bytes.front())));
  }
}

std::string EncodeAnnouncement(absl::string_view sender, const FleetAnnouncement& announcement) {
  std::string out;
  out.reserve(16 + sender.size() + announcement.key.size());
  out.push_back(static_cast<char>(kAnnouncementVersion));
  AppendBytes(out, sender);
  out.push_back(KindByte(announcement.kind));
  AppendBytes(out, announcement.key);
  if (announcement.kind == FleetAnnouncement::Kind::kFailed) {
    const absl::StatusCode code =
        announcement.failure.ok() ? absl::StatusCode::kUnknown : announcement.failure.code();
    AppendU32(out, static_cast<uint32_t>(code));
    AppendBytes(out, announcement.failure.message());
  }
  return out;
}

absl::StatusOr<DecodedAnnouncement> DecodeAnnouncement(absl::string_view message) {
  Reader in(message);
  char version = 0;
  if (!in.Byte(version)) return Malformed("empty");
  if (static_cast<uint8_t>(version) != kAnnouncementVersion) {
    return Malformed(absl::StrCat("version ", static_cast<uint8_t>(version),
                                  " (this sidecar reads ", kAnnouncementVersion, ")"));
  }
  DecodedAnnouncement decoded;
  if (!in.Bytes(decoded.sender)) return Malformed("cut short in the sender");
  char kind_byte = 0;
  if (!in.Byte(kind_byte)) return Malformed("cut short before the kind");
  const std::optional<FleetAnnouncement::Kind> kind = KindFromByte(kind_byte);
  if (!kind.has_value()) {
    return Malformed(absl::StrCat("unknown kind ", static_cast<int>(kind_byte)));
  }
  decoded.announcement.kind = *kind;
  if (!in.Bytes(decoded.announcement.key)) return Malformed("cut short in the key");
  if (*kind == FleetAnnouncement::Kind::kFailed) {
    uint32_t code = 0;
    std::string failure_message;
    if (!in.U32(code) || !in.Bytes(failure_message)) return Malformed("cut short in the failure");
    // The codes absl defines, OK excluded: a failure that is not one is not a failure.
    if (code == 0 || code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
      return Malformed(absl::StrCat("failure code ", code));
    }
    decoded.announcement.failure =
        absl::Status(static_cast<absl::StatusCode>(code), failure_message);
  }
  if (!in.done()) return Malformed("bytes after the end");
  return decoded;
}

}  // namespace flightcache
