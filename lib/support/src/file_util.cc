#include "flightcache/support/file_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace flightcache::support {
namespace {

constexpr size_t kMaxSecretBytes = 64 << 10;

}  // namespace

absl::StatusOr<std::string> ReadBoundedFile(absl::string_view what, const std::string& path,
                                            size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
  }
  std::string contents;
  contents.resize(max_bytes + 1);
  in.read(contents.data(), static_cast<std::streamsize>(contents.size()));
  contents.resize(static_cast<size_t>(in.gcount()));
  if (contents.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is larger than ", max_bytes, " bytes"));
  }
  return contents;
}

absl::StatusOr<std::string> ReadSecretFile(absl::string_view what, const std::string& path) {
  absl::StatusOr<std::string> contents = ReadBoundedFile(what, path, kMaxSecretBytes);
  if (!contents.ok()) return contents.status();
  absl::string_view secret = *contents;
  if (absl::ConsumeSuffix(&secret, "\n")) absl::ConsumeSuffix(&secret, "\r");
  if (secret.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' is empty"));
  }
  if (absl::c_any_of(secret, [](char c) { return absl::ascii_iscntrl(c); })) {
    // Not shown: it is a secret.
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' has a control character (more than one line?)"));
  }
  return std::string(secret);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  const bool written = std::fwrite(contents.data(), 1, contents.size(), f) == contents.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot rename to ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace flightcache::support
