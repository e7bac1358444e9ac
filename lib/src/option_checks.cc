#include "flightcache/option_checks.h"

#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

bool Finite(absl::Duration d) {
  return d != absl::InfiniteDuration() && d != -absl::InfiniteDuration();
}

}  // namespace

absl::Status OptionError(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

absl::Status CheckPositiveDuration(absl::string_view name, absl::Duration d, absl::Duration max) {
  if (d <= absl::ZeroDuration() || !Finite(d)) {
    return OptionError(
        name, absl::StrCat("must be a positive, finite duration, got ", absl::FormatDuration(d)));
  }
  if (d > max) {
    return OptionError(name, absl::StrCat("must be at most ", absl::FormatDuration(max), ", got ",
                                          absl::FormatDuration(d)));
  }
  return absl::OkStatus();
}

absl::Status CheckNonNegativeDuration(absl::string_view name, absl::Duration d,
                                      absl::Duration max) {
  if (d == absl::ZeroDuration()) return absl::OkStatus();
  if (d < absl::ZeroDuration() || !Finite(d)) {
    return OptionError(
        name, absl::StrCat("must be a finite duration >= 0, got ", absl::FormatDuration(d)));
  }
  return CheckPositiveDuration(name, d, max);
}

absl::Status CheckRange(absl::string_view name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return OptionError(name, absl::StrCat("must be in [", lo, ", ", hi, "], got ", v));
  }
  return absl::OkStatus();
}

absl::Status PrefixOptionError(absl::string_view prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

}  // namespace flightcache
