#include "server/admin_token_file.h"

#include <spdlog/spdlog.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "flightcache/support/file_util.h"

namespace flightcache {
namespace {

constexpr char kWhat[] = "admin token file";

}  // namespace

absl::StatusOr<std::unique_ptr<AdminTokenFile>> AdminTokenFile::Open(
    std::string path, AdminTokenFileOptions options) {
  absl::StatusOr<std::string> token = support::ReadSecretFile(kWhat, path);
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin-token-file: ", token.status().message()));
  }
  // Not make_unique: the constructor is private.
  std::unique_ptr<AdminTokenFile> file(
      new AdminTokenFile(std::move(path), AdminGuard::WithToken(*token), std::move(options)));
  if (file->options_.poll_interval != absl::InfiniteDuration()) {
    file->poller_ = std::thread([raw = file.get()] { raw->PollUntilStopped(); });
  }
  return file;
}

AdminTokenFile::AdminTokenFile(std::string path, AdminGuard guard, AdminTokenFileOptions options)
    : path_(std::move(path)), options_(std::move(options)), guard_(std::move(guard)) {}

AdminTokenFile::~AdminTokenFile() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (poller_.joinable()) poller_.join();
}

absl::Status AdminTokenFile::Check(absl::string_view peer,
                                   std::optional<absl::string_view> authorization) const {
  AdminGuard guard = AdminGuard::LocalPeersOnly();
  {
    absl::MutexLock lock(&mu_);
    guard = guard_;
  }
  return guard.Check(peer, authorization);
}

bool AdminTokenFile::Reload() {
  absl::StatusOr<std::string> token = support::ReadSecretFile(kWhat, path_);
  // Decided under the lock, logged after it: a slow log sink must not hold up Check().
  bool started_failing = false;
  bool recovered = false;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    if (!token.ok()) {
      started_failing = !std::exchange(failing_, true);
    } else {
      recovered = std::exchange(failing_, false);
      const AdminGuard next = AdminGuard::WithToken(*token);
      changed = !next.SameTokenAs(guard_);
      if (changed) {
        guard_ = next;
        ++reloads_;
      }
    }
  }
  if (started_failing) {
    spdlog::warn("--admin-token-file: {}; the token read before stays in force",
                 std::string(token.status().message()));
  }
  if (recovered) spdlog::info("--admin-token-file {} is readable again", path_);
  if (!changed) return false;
  spdlog::info("--admin-token-file {} changed: the new token is in force", path_);
  if (options_.on_change) options_.on_change();
  return true;
}

int64_t AdminTokenFile::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

void AdminTokenFile::PollUntilStopped() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll_interval)) return;
    }
    Reload();
  }
}

}  // namespace flightcache
