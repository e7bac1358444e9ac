#include "server/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flightcache {
namespace {

// sun_path holds this many bytes and a terminating NUL.
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr char kSocketName[] = "/s";

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrivateUnixSocket>> PrivateUnixSocket::Prepare(
    const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string dir = absl::StrCat(parent, "/.fcsock-XXXXXX");
  const size_t bind_path_bytes = dir.size() + std::strlen(kSocketName);
  if (path.size() > kMaxSocketPath || bind_path_bytes > kMaxSocketPath) {
    return absl::UnavailableError(absl::StrCat(
        "unix socket path ", path, " is too long: it and the path first bound beside it (",
        bind_path_bytes, " bytes) must be at most ", kMaxSocketPath, " bytes"));
  }
  if (mkdtemp(dir.data()) == nullptr) {  // mode 0700
    return Errno("cannot make a private directory beside the unix socket", dir);
  }
  return std::unique_ptr<PrivateUnixSocket>(new PrivateUnixSocket(path, std::move(dir)));
}

PrivateUnixSocket::PrivateUnixSocket(std::string path, std::string dir)
    : path_(std::move(path)), dir_(std::move(dir)), bind_path_(dir_ + kSocketName) {}

PrivateUnixSocket::~PrivateUnixSocket() {
  if (!dir_removed_) {
    unlink(bind_path_.c_str());
    rmdir(dir_.c_str());
  }
  struct stat st {};
  if (published_ && lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_) {
    unlink(path_.c_str());
  }
}

absl::Status PrivateUnixSocket::Publish(int mode) {
  if (chmod(bind_path_.c_str(), static_cast<mode_t>(mode)) != 0) {
    return Errno(absl::StrFormat("cannot set mode 0%o on", mode), bind_path_);
  }
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path_, ": it exists and is not a socket"));
  }
  if (rename(bind_path_.c_str(), path_.c_str()) != 0) {
    return Errno("cannot move the socket to", path_);
  }
  if (lstat(path_.c_str(), &st) == 0) {
    published_ = true;
    device_ = st.st_dev;
    inode_ = st.st_ino;
  }
  rmdir(dir_.c_str());
  dir_removed_ = true;
  return absl::OkStatus();
}

}  // namespace flightcache
