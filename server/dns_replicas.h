// DnsReplicaWatcher: keeps a ReplicaSet's members equal to the addresses a DNS name resolves to
// (--origin=grpc://dns:///NAME:PORT), as Envoy's strict-DNS clusters and gRPC's dns resolver do:
// a Kubernetes headless Service or any name with one A/AAAA record per replica.
//
// It resolves once in Start() and then every `refresh` on its own thread (getaddrinfo blocks, so
// no fetch ever waits on it). A resolution that fails or finds no address keeps the members as
// they are: a DNS hiccup must not empty a working set. The first such failure is logged, and the
// recovery; a change of members is logged with the new list.
//
// Thread-safety: Start() and the destructor from one thread; ResolveNow() is thread-safe.
// Lifetime: the ReplicaSet must outlive this object; the destructor stops and joins the thread
// (waiting at most for a getaddrinfo call in progress).
//
// Usage:
//   DnsReplicaWatcher watcher({.name = "origin.svc", .port = 50052, .refresh = absl::Seconds(5)},
//                             replica_set, MakeReplicaMaker(spec, timers, grpc));
//   watcher.Start();
#ifndef FLIGHTCACHE_SERVER_DNS_REPLICAS_H_
#define FLIGHTCACHE_SERVER_DNS_REPLICAS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "flightcache/replica_set.h"

namespace flightcache {

// Every address `name` resolves to with the system resolver (getaddrinfo, TCP), as sorted,
// distinct "ADDR:PORT" / "[ADDR6]:PORT". UNAVAILABLE (naming `name` and the resolver's reason)
// when the name does not resolve.
absl::StatusOr<std::vector<std::string>> ResolveAddresses(const std::string& name, int port);

struct DnsReplicaOptions {
  std::string name;
  int port = 0;
  absl::Duration refresh = absl::Seconds(5);
  // Tests replace the system resolver.
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string& name, int port)>
      resolve = ResolveAddresses;
  // Called after each change with the members' names (their Describe(), as the ReplicaSet's stats
  // name them), for metrics, on the resolving thread.
  std::function<void(const std::vector<std::string>& names)> on_change;
};

class DnsReplicaWatcher final {
 public:
  using OriginMaker = std::function<std::unique_ptr<Origin>(const std::string& address)>;

  DnsReplicaWatcher(DnsReplicaOptions options, ReplicaSet& replicas, OriginMaker make);
  ~DnsReplicaWatcher();
  DnsReplicaWatcher(const DnsReplicaWatcher&) = delete;
  DnsReplicaWatcher& operator=(const DnsReplicaWatcher&) = delete;

  // Resolves once now, then starts the refresh thread. A failed first resolution is not an
  // error: fetches fail with UNAVAILABLE until a resolution finds an address.
  void Start();

  // One resolution, applied: the members after it (unchanged when it failed).
  std::vector<std::string> ResolveNow();

  int64_t resolutions() const;
  int64_t failures() const;

 private:
  void Run();

  const DnsReplicaOptions options_;
  ReplicaSet& replicas_;
  const OriginMaker make_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> members_ ABSL_GUARDED_BY(mu_);
  bool failing_ ABSL_GUARDED_BY(mu_) = false;  // the last resolution failed (logged once)
  int64_t resolutions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex resolve_mu_;  // one resolution at a time, so results apply in order
  std::thread thread_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_DNS_REPLICAS_H_
