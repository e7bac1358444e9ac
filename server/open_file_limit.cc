#include "server/open_file_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

int64_t AsLimit(rlim_t value) { return value == RLIM_INFINITY ? -1 : static_cast<int64_t>(value); }

std::string FormatLimit(int64_t value) {
  return value < 0 ? std::string("unlimited") : absl::StrCat(value);
}

}  // namespace

std::string OpenFileLimit::Describe() const {
  if (!error.empty()) {
    return absl::StrCat("open file limit left at ", FormatLimit(soft_after), " (hard limit ",
                        FormatLimit(hard), "): ", error);
  }
  if (soft_before == soft_after) {
    return absl::StrCat("open file limit is ", FormatLimit(soft_after), " (the hard limit)");
  }
  return absl::StrCat("open file limit raised from ", FormatLimit(soft_before), " to ",
                      FormatLimit(soft_after), " (the hard limit)");
}

OpenFileLimit RaiseOpenFileLimit() {
  OpenFileLimit result;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    result.error = absl::StrCat("getrlimit: ", std::strerror(errno));
    return result;
  }
  result.soft_before = result.soft_after = AsLimit(limit.rlim_cur);
  result.hard = AsLimit(limit.rlim_max);
  if (limit.rlim_cur == limit.rlim_max) return result;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    result.error = absl::StrCat("setrlimit: ", std::strerror(errno));
    return result;
  }
  result.soft_after = result.hard;
  return result;
}

}  // namespace flightcache
