// RedisOptions: where the fleet tier's Redis is and how the sidecar talks to it.
//
// `--fleet=redis://HOST:PORT[/DB]` becomes a RedisEndpoint (ParseRedisUrl); `--fleet-timeout`,
// `--fleet-password-file` and the reconnect policy fill the rest of RedisOptions. Both
// RedisConnection (commands) and RedisSubscriber (pub/sub) take the same options.
//
// Thread-safety: plain values; the functions are thread-safe.
//
// Usage:
//   absl::StatusOr<RedisEndpoint> endpoint = ParseRedisUrl("redis://10.0.0.7:6379/2");
//   RedisOptions options{.endpoint = *endpoint};
//   options.password = *ReadRedisPasswordFile("/etc/flightcache/redis-password");
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_OPTIONS_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_OPTIONS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace flightcache {

inline constexpr int kDefaultRedisPort = 6379;

struct RedisEndpoint {
  // A host name or an address; an IPv6 address without its URL brackets.
  std::string host;
  int port = kDefaultRedisPort;
  // Selected with SELECT after connecting, when not 0.
  int db = 0;

  // "HOST:PORT/DB" ("[ADDR]:PORT/DB" for IPv6), for log lines.
  std::string ToString() const;
};

// Parses redis://HOST[:PORT][/DB]. PORT defaults to 6379, DB to 0. HOST may be a bracketed IPv6
// address. Refused, with an error that quotes the URL (escaped): another scheme (rediss://,
// redis+cluster://: not supported yet), a user or password in the URL (it would show in `ps`;
// use --fleet-password-file), a query or fragment, a port outside [1, 65535], a DB that is not
// a non-negative number, control characters.
absl::StatusOr<RedisEndpoint> ParseRedisUrl(absl::string_view url);

// The password in `path`: the file's content without one trailing newline ("\n" or "\r\n").
// An unreadable file, an empty password or one with a control character in it is an error.
absl::StatusOr<std::string> ReadRedisPasswordFile(const std::string& path);

struct RedisOptions {
  RedisEndpoint endpoint;
  // AUTH with this password after connecting, when not empty (--fleet-password-file).
  std::string password;

  // Every command is answered within this time (--fleet-timeout): a reply that comes later
  // completes its caller with DEADLINE_EXCEEDED and is dropped when it arrives.
  absl::Duration command_timeout = absl::Milliseconds(20);
  // Connecting, AUTH, SELECT (and SUBSCRIBE for the subscriber) must all be done within this
  // time, or the attempt counts as failed.
  absl::Duration connect_timeout = absl::Seconds(1);
  // A connection whose oldest command has had no reply for this long is stalled (a stopped or
  // overloaded Redis, a network black hole): it is dropped and reconnected, and commands fail
  // fast meanwhile instead of each waiting out its timeout. The subscriber probes its
  // connection with the same bound.
  absl::Duration stall_timeout = absl::Milliseconds(500);
  // How often the subscriber checks that its (otherwise silent) connection still answers.
  absl::Duration subscriber_probe_interval = absl::Seconds(1);
  // Reconnect attempts back off exponentially from `min_backoff` to `max_backoff`, each delay
  // drawn in [d/2, d] so that a fleet of sidecars does not reconnect in lockstep.
  absl::Duration min_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  // Commands sent and not yet answered (timed-out ones included, until Redis answers or the
  // connection is dropped); a command beyond it fails with RESOURCE_EXHAUSTED.
  size_t max_in_flight = 65536;

  absl::Status Validate() const;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_OPTIONS_H_
