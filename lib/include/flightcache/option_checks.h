// Option checks: the shared shape of every Validate() of an options struct.
//
// Each check returns OK or INVALID_ARGUMENT "NAME: what is wrong, got VALUE", where NAME is the
// option as its owner calls it ("load_timeout" in the core, "--drain-timeout" in the server), so a
// caller that maps option names to its own (flags, config keys) rewrites only the prefix.
//
// Thread-safety: pure functions.
//
// Usage:
//   if (absl::Status s = CheckPositiveDuration("load_timeout", load_timeout, absl::Hours(24));
//       !s.ok()) return s;
#ifndef FLIGHTCACHE_OPTION_CHECKS_H_
#define FLIGHTCACHE_OPTION_CHECKS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flightcache {

// INVALID_ARGUMENT "name: what".
absl::Status OptionError(absl::string_view name, absl::string_view what);

// `d` is finite, > 0 and <= max.
absl::Status CheckPositiveDuration(absl::string_view name, absl::Duration d, absl::Duration max);
// `d` is zero, or as CheckPositiveDuration.
absl::Status CheckNonNegativeDuration(absl::string_view name, absl::Duration d, absl::Duration max);
// lo <= v <= hi.
absl::Status CheckRange(absl::string_view name, int64_t v, int64_t lo, int64_t hi);

// `status` with "prefix" put before its message (for a nested options struct: "hedge." + "budget:
// ..."); OK stays OK.
absl::Status PrefixOptionError(absl::string_view prefix, const absl::Status& status);

}  // namespace flightcache

#endif  // FLIGHTCACHE_OPTION_CHECKS_H_
