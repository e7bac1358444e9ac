// PrivateUnixSocket: a unix socket that appears at its path with its final mode, never before.
//
// bind() creates the socket file with 0777 minus the umask, so a chmod after it leaves a window in
// which anyone the umask lets through can connect. The umask cannot close it: it is per process,
// and the server's other threads (gRPC's, the TLS file publisher) create files meanwhile. So the
// socket is bound in a private directory (0700) beside the path, where no one else can reach it
// (connect() needs search permission on every directory of the path), chmod-ed there, and then
// renamed onto the path: a rename is atomic, and a connected or listening socket stays bound to
// its inode, not its name.
//
// Thread-safety: one thread uses an object. Lifetime: destroy it after the server bound to
// bind_path() has stopped; it removes the socket file then (if the path still names it).
//
// Usage:
//   absl::StatusOr<std::unique_ptr<PrivateUnixSocket>> socket = PrivateUnixSocket::Prepare(path);
//   StartGrpcServer(builder, "unix:" + (*socket)->bind_path(), ...);
//   if (absl::Status s = (*socket)->Publish(0660); !s.ok()) stop the server, fail;
#ifndef FLIGHTCACHE_SERVER_UNIX_SOCKET_H_
#define FLIGHTCACHE_SERVER_UNIX_SOCKET_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flightcache {

class PrivateUnixSocket final {
 public:
  // Makes the private directory beside `path` (in the same directory: the rename must not cross
  // filesystems). UNAVAILABLE naming the path if it cannot, or if a socket path would be too long.
  static absl::StatusOr<std::unique_ptr<PrivateUnixSocket>> Prepare(const std::string& path);
  ~PrivateUnixSocket();
  PrivateUnixSocket(const PrivateUnixSocket&) = delete;
  PrivateUnixSocket& operator=(const PrivateUnixSocket&) = delete;

  // Where to bind: a path inside the private directory.
  const std::string& bind_path() const { return bind_path_; }
  const std::string& path() const { return path_; }

  // Sets the bound socket's mode, then moves it onto path(), replacing a socket left there (as
  // gRPC's own bind would) but nothing else: a regular file, a directory or a symlink at the path
  // is an error. Removes the private directory.
  absl::Status Publish(int mode);

 private:
  PrivateUnixSocket(std::string path, std::string dir);

  const std::string path_;
  const std::string dir_;  // the private directory
  const std::string bind_path_;
  bool dir_removed_ = false;  // by Publish()
  // The published socket's identity, so the destructor never removes a successor's socket.
  bool published_ = false;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_UNIX_SOCKET_H_
