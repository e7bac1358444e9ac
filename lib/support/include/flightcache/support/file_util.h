// WriteFileAtomically: replace a file's contents so that readers never see a partial file.
//
// Writes `path`.tmp.<pid> and renames it over `path` (rename is atomic within a file system),
// so a test polling a port file or stats file reads either the old or the new contents.
// Thread-safety: safe to call concurrently for different paths.
#ifndef FLIGHTCACHE_SUPPORT_FILE_UTIL_H_
#define FLIGHTCACHE_SUPPORT_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flightcache::support {

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace flightcache::support

#endif  // FLIGHTCACHE_SUPPORT_FILE_UTIL_H_
