// RedisSubscriber: a connection of its own that stays SUBSCRIBEd to a fixed set of channels and
// delivers their messages to a callback, across reconnects.
//
// The fleet tier's announcements (value loaded, load failed, key invalidated) arrive here. A
// subscribed Redis connection can send nothing but (un)subscriptions, so commands go through
// RedisConnection. When the connection is lost (Redis down or restarted, or a probe unanswered),
// it reconnects with backoff like RedisConnection and subscribes again; messages published in
// between are lost, so every subscription after the first is reported by `on_resubscribed`: the
// owner must assume it missed some (the fleet tier drops its local cache). A subscribed
// connection is otherwise silent, so it is probed every `subscriber_probe_interval` (SUBSCRIBE
// again to a channel it has: Redis confirms, nothing changes) and dropped if no answer comes
// within `stall_timeout`.
//
// Thread-safety: state() is thread-safe. Callbacks run on the loop thread; they must be short
// and must not block. The destructor must not run on the loop thread.
// Lifetime: the EventLoop outlives the subscriber; after the destructor returns no callback runs.
//
// Usage:
//   RedisSubscriber sub(loop, options, {"fc:announce"},
//                       {.on_message = [](absl::string_view channel, absl::string_view m) {},
//                        .on_resubscribed = [] { /* drop what may be stale */ }});
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_SUBSCRIBER_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_SUBSCRIBER_H_

#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_link.h"
#include "server/fleet/redis_options.h"

namespace flightcache {

class RedisSubscriber final {
 public:
  struct Callbacks {
    absl::AnyInvocable<void(absl::string_view channel, absl::string_view message)> on_message;
    // Subscribed again after a lost connection: messages may have been missed. May be empty.
    absl::AnyInvocable<void()> on_resubscribed;
    // The state changed (connected once every channel is subscribed). May be empty.
    absl::AnyInvocable<void(RedisState)> on_state;
  };

  // Starts connecting at once. REQUIRES: options.Validate().ok(), `channels` not empty.
  RedisSubscriber(EventLoop& loop, const RedisOptions& options, std::vector<std::string> channels,
                  Callbacks callbacks);
  ~RedisSubscriber();
  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

  RedisState state() const { return link_.state(); }

 private:
  void Subscribe(struct redisAsyncContext* context);
  void OnLost();
  void ScheduleProbe();
  void Probe();
  static void OnSubscriptionReply(struct redisAsyncContext* context, void* reply, void* subscriber);

  EventLoop& loop_;
  const RedisOptions options_;
  const std::vector<std::string> channels_;
  Callbacks callbacks_;
  RedisLink link_;

  // Loop thread only.
  size_t confirmations_pending_ = 0;  // subscribe confirmations before the link is ready
  bool subscribed_before_ = false;
  bool probe_outstanding_ = false;
  EventLoop::TimerId probe_timer_ = EventLoop::kNoTimer;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_SUBSCRIBER_H_
