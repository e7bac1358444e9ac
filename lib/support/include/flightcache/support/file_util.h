// Files the programs write and read.
//
// WriteFileAtomically: replace a file's contents so that readers never see a partial file.
// Writes `path`.tmp.<pid> and renames it over `path` (rename is atomic within a file system),
// so a test polling a port file or stats file reads either the old or the new contents.
//
// ReadBoundedFile: a whole small file (certificates, keys): an error if it cannot be read or is
// larger than `max_bytes`, naming the file as `what` and its path.
//
// ReadSecretFile: a password or token kept in a file (secrets are never flag values). One line:
// one trailing "\n" or "\r\n" is dropped; empty, larger than 64 KiB, or with any other control
// character is an error. Errors name the file as `what` and its path, never its contents.
//
// Thread-safety: safe to call concurrently for different paths.
#ifndef FLIGHTCACHE_SUPPORT_FILE_UTIL_H_
#define FLIGHTCACHE_SUPPORT_FILE_UTIL_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flightcache::support {

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

absl::StatusOr<std::string> ReadBoundedFile(absl::string_view what, const std::string& path,
                                            size_t max_bytes);

// `what` names the file in errors, e.g. "admin token file".
absl::StatusOr<std::string> ReadSecretFile(absl::string_view what, const std::string& path);

}  // namespace flightcache::support

#endif  // FLIGHTCACHE_SUPPORT_FILE_UTIL_H_
