// RedisConnection: the fleet tier's asynchronous, pipelined Redis client (hiredis), on which the
// fleet tier (docs/PROTOCOL.md, "Beyond one pod") will be built.
//
// Design
// - Threading. hiredis is not thread-safe, so every connection lives on one EventLoop thread
//   (epoll; hiredis' async API through a small adapter, server/fleet/redis_link.cc). Callers on
//   any thread (gRPC threads) call Command(), which only queues the command for the loop and
//   returns: it never blocks, never waits for Redis and never runs the callback inline. Every
//   callback runs on the loop thread, exactly once.
// - Pipelining. Commands queued while the loop is busy go out in one write; Redis answers in
//   order, so the callbacks run in the order of the commands.
// - Timeouts. Each command is answered within `command_timeout` (--fleet-timeout, 20 ms): if
//   Redis has not replied by then the callback gets DEADLINE_EXCEEDED, and the reply, when it
//   comes, is dropped. Deadlines are kept in send order, so one timer serves them all.
// - Failure and reconnect. No usable connection (Redis down, still reconnecting, handshake not
//   done): a command fails fast with UNAVAILABLE, without waiting for its timeout. A connection
//   lost with commands in flight fails them with UNAVAILABLE. A connection whose oldest command
//   has had no reply for `stall_timeout` (a stopped Redis, a network black hole) is dropped, so
//   callers fail fast instead of each waiting out its timeout. Reconnecting backs off
//   exponentially with jitter; AUTH (--fleet-password-file) and SELECT (redis://HOST:PORT/DB)
//   are part of each connect. The state (connecting / connected / degraded) is readable from any
//   thread and each change is logged once.
// - Pub/sub has its own connection (RedisSubscriber, redis_subscriber.h): a subscribed
//   connection can send nothing else, and announcements must not queue behind commands.
//
// What the fleet tier will send (keys `<prefix>{<cache key>}...`, the hash tag putting a key's
// value, lease and announcement in one Redis Cluster slot):
//   GET fc:{key}                         second-level read, once per local flight; the value
//                                        carries its remaining TTL (PTTL, or stored with it)
//   SET fc:{key} <value> PX <ttl ms>     store a loaded value / NOT_FOUND with the negative TTL
//   SET fc:{key}:lease <token> NX PX <lease ttl>   take the key's lease (one origin fetch per
//                                        key across the fleet); renewal extends it (PEXPIRE if
//                                        the token is still ours, done atomically), DEL or expiry
//                                        ends it, and a waiter takes an expired lease over
//   DEL fc:{key} fc:{key}:lease          Invalidate: the value and the outstanding lease
//   PUBLISH <channel> <announcement>     loaded / failed / invalidated, to every sidecar
//   SUBSCRIBE <channel>                  (RedisSubscriber) waiters woken by announcements;
//                                        a re-subscription means missed invalidations
// The tag must not be the raw cache key: Redis Cluster hashes what lies between the first '{'
// and the next '}', so a key with a '}' in it ends the tag early, and an empty tag makes Redis
// hash the whole name, putting `fc:{}` and `fc:{}:lease` in different slots. Escape or hash
// the key into the tag.
//
// Host names are resolved on the loop thread, synchronously (hiredis 0.14's connect does
// getaddrinfo): use an address or a name the local resolver answers at once.
//
// Thread-safety: Command() and state() are thread-safe. The destructor must not run on the
// loop thread.
// Lifetime: the EventLoop outlives the connection. The destructor completes every outstanding
// command with CANCELLED and waits until the loop holds nothing of the connection.
//
// Usage:
//   EventLoop loop;
//   RedisConnection redis(loop, options);
//   redis.Command({"SET", "fc:{k}", value, "PX", "5000"},
//                 [](absl::StatusOr<RedisReply> reply) { /* on the loop thread */ });
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_CONNECTION_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_CONNECTION_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_link.h"
#include "server/fleet/redis_options.h"
#include "server/fleet/redis_reply.h"

namespace flightcache {

class RedisConnection final {
 public:
  // The reply, or: DEADLINE_EXCEEDED (no reply within command_timeout), UNAVAILABLE (no usable
  // connection, or it was lost), RESOURCE_EXHAUSTED (max_in_flight commands in flight),
  // INVALID_ARGUMENT (an empty command, or one that belongs to RedisSubscriber), INTERNAL
  // (Redis answered with an error reply; its message is in the status), CANCELLED (the
  // connection was destroyed first). Runs on the loop thread; must be short and must not block.
  using Callback = absl::AnyInvocable<void(absl::StatusOr<RedisReply>) &&>;

  // What the owner hears of, on the loop thread, for its metrics (the tier's state, Redis call
  // latency and errors). Each may be empty; each must be short and must not block.
  struct Observers {
    absl::AnyInvocable<void(RedisState)> on_state;
    // Every call's outcome (OK for any reply, nil included) and its latency from Command() to
    // its callback, told just before the callback runs.
    absl::AnyInvocable<void(absl::StatusCode, absl::Duration)> on_call;
  };

  // Starts connecting at once. REQUIRES: options.Validate().ok().
  RedisConnection(EventLoop& loop, const RedisOptions& options, Observers observers = {});
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends `args` (command name first; binary-safe) and calls `done` once with the outcome. The
  // command's timeout starts now. Never blocks and never calls `done` inline.
  void Command(std::vector<std::string> args, Callback done);

  RedisState state() const { return link_.state(); }

 private:
  struct InFlight {
    RedisConnection* owner;
    Callback done;  // empty once answered by the timeout
    absl::Time deadline;
  };

  void Send(std::vector<std::string> args, Callback done, absl::Time deadline);
  // Tells on_call, then runs `done`. `deadline` is the command's (its start + command_timeout).
  void Complete(Callback done, absl::Time deadline, absl::StatusOr<RedisReply> result);
  void ArmTimer();
  void OnTimer();
  static void OnReply(struct redisAsyncContext* context, void* reply, void* in_flight);

  EventLoop& loop_;
  const RedisOptions options_;
  absl::AnyInvocable<void(absl::StatusCode, absl::Duration)> on_call_;
  RedisLink link_;

  // Loop thread only. Sent commands in send order: their replies come in this order, and their
  // deadlines never decrease along it. The first `expired_` were answered by their timeout and
  // wait only for Redis' reply (or the connection's end) to be dropped.
  std::deque<std::unique_ptr<InFlight>> in_flight_;
  size_t expired_ = 0;
  absl::Time last_deadline_ = absl::InfinitePast();
  EventLoop::TimerId timer_ = EventLoop::kNoTimer;
  absl::Time timer_due_ = absl::InfiniteFuture();
  bool shut_down_ = false;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_CONNECTION_H_
