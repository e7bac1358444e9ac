#include "server/tls_listener.h"

#include <fcntl.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "flightcache/support/file_util.h"
#include "server/grpc_tls.h"
#include "spdlog/spdlog.h"

namespace flightcache {
namespace {

constexpr char kKeyName[] = "key.pem";
constexpr char kCertName[] = "cert.pem";
constexpr char kCaName[] = "ca.pem";
// gRPC's FileWatcherCertificateProvider reads the published files this often (its minimum).
constexpr unsigned kGrpcRefreshSeconds = 1;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Writes `contents` to a new file `path` with `mode` and the modification time `mtime_seconds`
// after the epoch (see the header: gRPC tells generations apart by it).
absl::Status WriteGenerationFile(const std::string& path, absl::string_view contents, mode_t mode,
                                 int64_t mtime_seconds) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Errno("cannot create", path);
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status error = Errno("cannot write", path);
      close(fd);
      return error;
    }
    written += static_cast<size_t>(n);
  }
  const timespec times[2] = {{.tv_sec = mtime_seconds, .tv_nsec = 0},
                             {.tv_sec = mtime_seconds, .tv_nsec = 0}};
  const bool timed = futimens(fd, times) == 0;
  const bool closed = close(fd) == 0;
  if (!timed || !closed) return Errno("cannot finish", path);
  return absl::OkStatus();
}

std::string StagingParent(const TlsListenerOptions& options) {
  if (!options.staging_parent.empty()) return options.staging_parent;
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> TlsListenerCredentials::Start(
    const TlsListenerFiles& files, const TlsListenerOptions& options) {
  absl::StatusOr<Pem> pem = ReadAndCheck(files);
  if (!pem.ok()) return pem.status();
  std::string pattern = absl::StrCat(StagingParent(options), "/flightcache-tls-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {  // mode 0700
    return absl::UnavailableError(absl::StrCat(
        "--tls-cert-file: cannot make a private directory for the certificates being served (",
        pattern, ": ", std::strerror(errno), "); set TMPDIR to a writable directory"));
  }
  std::unique_ptr<TlsListenerCredentials> tls(
      new TlsListenerCredentials(files, options, std::move(pattern)));
  {
    absl::MutexLock lock(&tls->mu_);
    if (absl::Status s = tls->Publish(*pem); !s.ok()) return s;
  }
  const std::string current = absl::StrCat(tls->dir_, "/current/");
  const bool mtls = !files.client_ca_file.empty();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      current + kKeyName, current + kCertName, mtls ? current + kCaName : std::string(),
      kGrpcRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (mtls) {
    tls_options.watch_root_certs();
    tls_options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    tls_options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  tls->credentials_ = grpc::experimental::TlsServerCredentials(tls_options);
  tls->poller_ = std::thread([t = tls.get()] { t->PollUntilStopped(); });
  return tls;
}

TlsListenerCredentials::TlsListenerCredentials(TlsListenerFiles files, TlsListenerOptions options,
                                               std::string dir)
    : files_(std::move(files)), options_(std::move(options)), dir_(std::move(dir)) {}

TlsListenerCredentials::~TlsListenerCredentials() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (poller_.joinable()) poller_.join();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status TlsListenerCredentials::CheckFiles(const TlsListenerFiles& files) {
  return ReadAndCheck(files).status();
}

absl::StatusOr<TlsListenerCredentials::Pem> TlsListenerCredentials::ReadAndCheck(
    const TlsListenerFiles& files) {
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert-file and --tls-key-file go together: give both for TLS");
  }
  Pem pem;
  // The key is read first: an operator replaces the key, then the certificate, so a read
  // between the two sees a new key with an old certificate (refused below), never the reverse
  // pair passing as new.
  absl::StatusOr<std::string> key =
      support::ReadBoundedFile("--tls-key-file", files.key_file, kMaxPemFileBytes);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> cert =
      support::ReadBoundedFile("--tls-cert-file", files.cert_file, kMaxPemFileBytes);
  if (!cert.ok()) return cert.status();
  if (absl::Status s = CheckCertificates("--tls-cert-file", *cert); !s.ok()) return s;
  if (absl::Status s = CheckKeyMatchesCertificate(*key, *cert); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key-file: ", s.message()));
  }
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        support::ReadBoundedFile("--tls-client-ca-file", files.client_ca_file, kMaxPemFileBytes);
    if (!ca.ok()) return ca.status();
    if (absl::Status s = CheckCertificates("--tls-client-ca-file", *ca); !s.ok()) return s;
    pem.client_ca = *std::move(ca);
  }
  pem.key = *std::move(key);
  pem.cert = *std::move(cert);
  return pem;
}

absl::Status TlsListenerCredentials::Publish(const Pem& pem) {
  const int64_t generation = generation_ + 1;
  const std::string name = absl::StrCat("gen-", generation);
  const std::string gen_dir = absl::StrCat(dir_, "/", name);
  if (mkdir(gen_dir.c_str(), 0700) != 0) return Errno("cannot create", gen_dir);
  absl::Status s =
      WriteGenerationFile(absl::StrCat(gen_dir, "/", kKeyName), pem.key, 0600, generation);
  if (s.ok()) {
    s = WriteGenerationFile(absl::StrCat(gen_dir, "/", kCertName), pem.cert, 0644, generation);
  }
  if (s.ok() && !pem.client_ca.empty()) {
    s = WriteGenerationFile(absl::StrCat(gen_dir, "/", kCaName), pem.client_ca, 0644, generation);
  }
  const std::string next_link = absl::StrCat(dir_, "/current.next");
  if (s.ok() && symlink(name.c_str(), next_link.c_str()) != 0) s = Errno("cannot link", next_link);
  const std::string link = absl::StrCat(dir_, "/current");
  if (s.ok() && rename(next_link.c_str(), link.c_str()) != 0) s = Errno("cannot rename", link);
  std::error_code ignored;
  if (!s.ok()) {
    std::filesystem::remove(next_link, ignored);
    std::filesystem::remove_all(gen_dir, ignored);
    return s;
  }
  // Generation N-1 may still be in a gRPC read that began before this rename; N-2 is not.
  std::filesystem::remove_all(absl::StrCat(dir_, "/gen-", generation - 2), ignored);
  generation_ = generation;
  served_ = pem;
  return absl::OkStatus();
}

absl::StatusOr<bool> TlsListenerCredentials::CheckFilesNow() {
  absl::StatusOr<Pem> pem = ReadAndCheck(files_);
  absl::MutexLock lock(&mu_);
  if (pem.ok() && *pem == served_) return false;
  absl::Status s = pem.ok() ? Publish(*pem) : pem.status();
  if (s.ok()) {
    last_rejected_.clear();
    spdlog::info("TLS: serving the new certificate from {} (rotation {})", files_.cert_file,
                 generation_ - 1);
    return true;
  }
  // Counted and logged once per failure, not once a poll: the files may stay half-replaced for a
  // while.
  if (std::string why(s.message()); why != last_rejected_) {
    ++rejected_;
    spdlog::warn(
        "TLS: the certificate files changed but cannot be served yet ({}); the "
        "previous certificate stays in use",
        why);
    last_rejected_ = std::move(why);
  }
  return s;
}

int64_t TlsListenerCredentials::rotations() const {
  absl::MutexLock lock(&mu_);
  return generation_ - 1;
}

int64_t TlsListenerCredentials::rejected() const {
  absl::MutexLock lock(&mu_);
  return rejected_;
}

void TlsListenerCredentials::PollUntilStopped() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.poll_interval)) return;
    }
    CheckFilesNow().IgnoreError();  // logged inside
  }
}

}  // namespace flightcache
