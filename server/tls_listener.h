// TlsListenerCredentials: TLS (and mTLS) for a gRPC listener from PEM files that are re-read
// when they change, so a certificate rotation needs no restart and fails no call in flight.
//
// How: gRPC's FileWatcherCertificateProvider re-reads its files every second and hands new key
// material to the listener's next handshakes (connections already up keep theirs). It reads the
// key and the certificate one after the other, with nothing to say they belong together, and an
// operator (or cert-manager, or a Secret update) replaces them one after the other: a watcher
// pointed at those files would, between the two renames, serve a key with another key's
// certificate and fail every handshake until the next read. So gRPC does not watch the
// operator's files. This class does:
//   1. every `poll_interval` it reads the operator's files and, if their bytes changed, checks
//      them with OpenSSL (the certificate parses and is the key's; the client CA parses);
//   2. a set that passes is written, as one generation, into a private directory (mode 0700,
//      key 0600) and published by renaming one symlink: `current -> gen-N`; gRPC watches
//      current/{key,cert,ca}.pem;
//   3. a set that fails is not published: the old pair stays served, and why is logged once per
//      new set of bytes.
// A gRPC read that straddles a publication sees it: each generation's files carry their own
// modification time (N seconds after the epoch), and gRPC reads again when a file's time
// changed during its read.
//
// The private directory is made under `staging_parent` ($TMPDIR or /tmp by default: with a
// read-only root filesystem, mount a memory-backed volume there) and removed by the destructor.
//
// Thread-safety: every method is thread-safe. The poll thread starts in Start() and is joined
// by the destructor; destroy this object only after the server that uses credentials().
//
// Usage:
//   absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> tls =
//       TlsListenerCredentials::Start({.cert_file = c, .key_file = k, .client_ca_file = ca});
//   if (!tls.ok()) exit 2 with tls.status().message();  // names the flag at fault
//   StartGrpcServer(builder, address, (*tls)->credentials());
#ifndef FLIGHTCACHE_SERVER_TLS_LISTENER_H_
#define FLIGHTCACHE_SERVER_TLS_LISTENER_H_

#include <grpcpp/security/server_credentials.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace flightcache {

struct TlsListenerFiles {
  // The listener's certificate chain (leaf first) and its key: --tls-cert-file, --tls-key-file.
  std::string cert_file;
  std::string key_file;
  // Client certificates must be signed by one of these CAs (mTLS): --tls-client-ca-file.
  // Empty: clients are not asked for a certificate.
  std::string client_ca_file;
};

struct TlsListenerOptions {
  // How often the operator's files are read for a change.
  absl::Duration poll_interval = absl::Seconds(1);
  // Where the private directory is made; empty: $TMPDIR, else /tmp.
  std::string staging_parent;
};

class TlsListenerCredentials final {
 public:
  // Reads and checks the files (errors name the flag: "--tls-key-file: the key does not match
  // the certificate"), publishes them and starts watching.
  // Reads and checks the files as Start() does, without serving them (for --check-config).
  static absl::Status CheckFiles(const TlsListenerFiles& files);

  static absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> Start(
      const TlsListenerFiles& files, const TlsListenerOptions& options = {});
  ~TlsListenerCredentials();
  TlsListenerCredentials(const TlsListenerCredentials&) = delete;
  TlsListenerCredentials& operator=(const TlsListenerCredentials&) = delete;

  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }

  // One poll, now: true if a changed, valid set was published; false if nothing changed; an
  // error (the old set stays served) if the files changed but cannot be used.
  absl::StatusOr<bool> CheckFilesNow();

  // Sets published after the first.
  int64_t rotations() const;
  // Times the files changed to a set that cannot be served (unreadable, unparsable, key and
  // certificate apart): once per reason in a row, not once per poll.
  int64_t rejected() const;

 private:
  struct Pem {
    std::string cert;
    std::string key;
    std::string client_ca;
    bool operator==(const Pem&) const = default;
  };

  TlsListenerCredentials(TlsListenerFiles files, TlsListenerOptions options, std::string dir);
  static absl::StatusOr<Pem> ReadAndCheck(const TlsListenerFiles& files);
  absl::Status Publish(const Pem& pem) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PollUntilStopped();

  const TlsListenerFiles files_;
  const TlsListenerOptions options_;
  const std::string dir_;  // the private directory
  std::shared_ptr<grpc::ServerCredentials> credentials_;

  mutable absl::Mutex mu_;
  Pem served_ ABSL_GUARDED_BY(mu_);
  std::string last_rejected_ ABSL_GUARDED_BY(mu_);  // bytes of the last set refused, logged once
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread poller_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_TLS_LISTENER_H_
