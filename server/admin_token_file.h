// AdminTokenFile: the admin call's guard for --admin-token-file, following the file.
//
// A token is rotated by replacing the file (a Kubernetes Secret updated in place, a config
// manager): the server re-reads it every `poll_interval` and, when it holds a different valid
// token, the new token is in force for the next call and the old one refused. A file that cannot
// be read or holds no valid token (empty, too large, control characters: support::ReadSecretFile)
// keeps the last good token: a rotation half written never locks the operator out, and the
// failure is logged once until the file is good again. The token itself is never logged.
//
// Thread-safety: Check() and Reload() are safe from any thread. The poll thread starts in Open()
// and is joined by the destructor.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<AdminTokenFile>> admin =
//       AdminTokenFile::Open(path, {.poll_interval = absl::Seconds(1)});
//   if (absl::Status s = (*admin)->Check(peer, authorization); !s.ok()) refuse(s);
#ifndef FLIGHTCACHE_SERVER_ADMIN_TOKEN_FILE_H_
#define FLIGHTCACHE_SERVER_ADMIN_TOKEN_FILE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/admin_guard.h"

namespace flightcache {

struct AdminTokenFileOptions {
  absl::Duration poll_interval = absl::Seconds(1);  // InfiniteDuration: no poll thread
  // Called (on the thread that reloaded) after a new token came into force. For tests.
  std::function<void()> on_change;
};

class AdminTokenFile final : public AdminCheck {
 public:
  // Reads the token; an error names --admin-token-file and the path, never the contents.
  static absl::StatusOr<std::unique_ptr<AdminTokenFile>> Open(std::string path,
                                                              AdminTokenFileOptions options);
  ~AdminTokenFile() override;

  absl::Status Check(absl::string_view peer,
                     std::optional<absl::string_view> authorization) const override;

  // Reads the file now: true if it held a valid token other than the one in force, which it now
  // is. Called by the poll thread; tests call it directly.
  bool Reload();

  int64_t reloads() const;  // tokens that replaced another since Open()

 private:
  AdminTokenFile(std::string path, AdminGuard guard, AdminTokenFileOptions options);
  void PollUntilStopped();

  const std::string path_;
  const AdminTokenFileOptions options_;
  mutable absl::Mutex mu_;
  AdminGuard guard_ ABSL_GUARDED_BY(mu_);
  bool failing_ ABSL_GUARDED_BY(mu_) = false;  // the last read failed (logged once)
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread poller_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_ADMIN_TOKEN_FILE_H_
