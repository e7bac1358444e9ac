// RedisFleetStore: the FleetStore (lib/include/flightcache/fleet_store.h) on Redis — the store
// that the sidecars of a fleet share, with per-key leases and announcements.
//
// Design
// - One RedisConnection for commands and one RedisSubscriber for the announcement channel
//   <prefix>announce (one channel for every key). Key names and the encodings are in
//   redis_fleet_keys.h and redis_fleet_codec.h.
// - Each operation is one command, so one round trip, and atomic where it has to be:
//     Read        EVAL: GET entry and its PTTL together
//     TakeLease   SET lease token NX PX ttl
//     RenewLease  EVAL: PEXPIRE lease if it still holds the token
//     Publish     EVAL: if the lease still holds the token: SET entry PX ttl (when given), DEL
//                 lease, PUBLISH the announcement
//     Invalidate  EVAL per key: DEL entry and lease, PUBLISH kInvalidated (pipelined)
//   TTLs go to Redis in whole milliseconds, rounded up, at least 1 ms and at most a year.
// - Time. Every operation is bounded by the connection's command_timeout (--fleet-timeout):
//   Redis down, restarting or stopped means a non-OK status, fast or within that time, and the
//   core goes on alone. Reconnecting is the connection's and the subscriber's own job.
// - Threads. Redis replies arrive on the EventLoop thread, which must stay free for I/O, so
//   every callback and every listener call runs on the WorkerPool. Listener calls run one at a
//   time, in the order the announcements arrived (a key's kLoaded is never overtaken by its
//   kInvalidated); announcements that this store published itself are dropped (each store has a
//   random instance id, carried in its announcements). OnResubscribed is queued when the
//   subscriber has its channel again, so it may run just before or just after CanWait() turns
//   true.
// - Malformed announcements (another version, garbage on the channel) are counted and dropped.
// - Errors: UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED from the connection; INTERNAL
//   for an error reply or a reply of an unexpected shape (including an entry this version
//   cannot decode); CANCELLED for calls outstanding when the store is destroyed.
//
// Thread-safety: thread-safe. SetListener returns once no call to the previous listener is
// running (except the caller's own, when called from inside a listener call).
// Lifetime: the EventLoop and the WorkerPool outlive the store. The destructor must not run on the
// loop thread; it completes every outstanding operation (CANCELLED), on the pool. Callbacks
// posted to the pool hold no reference to the store; SetListener(nullptr) before the listener
// goes away.
//
// Usage:
//   EventLoop loop("fleet");
//   WorkerPool workers(2);
//   RedisFleetStore store(loop, redis_options, workers, {.key_prefix = "fc:"});
//   store.SetListener(&flight_cache_listener);
//   store.Read("k", [](absl::StatusOr<std::optional<FleetEntry>> entry) { ... });
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_STORE_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flightcache/fleet_store.h"
#include "flightcache/worker_pool.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_connection.h"
#include "server/fleet/redis_fleet_keys.h"
#include "server/fleet/redis_options.h"
#include "server/fleet/redis_subscriber.h"

namespace flightcache {

// What the metrics show of the fleet tier. Counters only grow.
struct RedisFleetStoreStats {
  RedisState commands_state = RedisState::kConnecting;
  RedisState subscriber_state = RedisState::kConnecting;
  uint64_t calls = 0;          // Redis commands answered (any outcome)
  uint64_t call_errors = 0;    // ... with a non-OK status
  uint64_t call_timeouts = 0;  // ... of those, DEADLINE_EXCEEDED
  absl::Duration call_latency_total = absl::ZeroDuration();  // summed over `calls`
  absl::Duration call_latency_max = absl::ZeroDuration();
  uint64_t invalidations_sent = 0;       // keys whose Invalidate Redis carried out
  uint64_t announcements_published = 0;  // by Publish and Invalidate, as Redis confirmed
  uint64_t announcements_received = 0;   // well-formed, from other sidecars
  uint64_t announcements_malformed = 0;  // dropped: could not be decoded
  uint64_t resubscriptions = 0;          // the subscriber lost and regained its channel
};

struct RedisFleetStoreOptions {
  // Put before every Redis key and channel name. REQUIRES: ValidateFleetKeyPrefix(...).ok().
  std::string key_prefix{kDefaultFleetKeyPrefix};
  // Told of every Redis command's outcome and latency, and of every state change of either
  // connection, on the loop thread (for a latency histogram, a state gauge). May be empty; must
  // be short and must not block.
  absl::AnyInvocable<void(absl::StatusCode, absl::Duration)> on_call;
  absl::AnyInvocable<void()> on_state_change;
};

class RedisFleetStore final : public FleetStore {
 public:
  // Starts connecting at once. REQUIRES: redis.Validate().ok().
  RedisFleetStore(EventLoop& loop, const RedisOptions& redis, WorkerPool& workers,
                  RedisFleetStoreOptions options = {});
  ~RedisFleetStore() override;
  RedisFleetStore(const RedisFleetStore&) = delete;
  RedisFleetStore& operator=(const RedisFleetStore&) = delete;

  void SetListener(FleetListener* listener) override;
  bool CanWait() const override;
  void Read(const std::string& key, Callback<std::optional<FleetEntry>> done) override;
  void TakeLease(const std::string& key, const std::string& token, absl::Duration ttl,
                 Callback<bool> done) override;
  void RenewLease(const std::string& key, const std::string& token, absl::Duration ttl,
                  Callback<bool> done) override;
  void Publish(const std::string& key, const std::string& token, std::optional<FleetEntry> entry,
               FleetAnnouncement announcement, Callback<bool> done) override;
  void Invalidate(std::vector<std::string> keys, DoneCallback done) override;

  RedisFleetStoreStats stats() const;
  // This store's id in its announcements (random per store).
  const std::string& instance_id() const { return instance_id_; }

 private:
  class ListenerDispatch;

  // Sends `args` and hands the reply, converted by `convert` on a worker, to `done` there.
  template <typename T, typename Convert>
  void Call(std::vector<std::string>&& args, Convert convert, Callback<T> done);
  void OnCall(absl::StatusCode code, absl::Duration latency);
  void OnMessage(absl::string_view message);

  WorkerPool& workers_;
  const std::string prefix_;
  const std::string channel_;
  const std::string instance_id_;
  absl::AnyInvocable<void(absl::StatusCode, absl::Duration)> on_call_;
  absl::AnyInvocable<void()> on_state_change_;
  // Shared with the listener calls queued on the pool, which may outlive the store.
  const std::shared_ptr<ListenerDispatch> dispatch_;

  // Written on the loop thread, read anywhere: relaxed, they are independent counters.
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> call_errors_{0};
  std::atomic<uint64_t> call_timeouts_{0};
  std::atomic<int64_t> call_latency_total_us_{0};
  std::atomic<int64_t> call_latency_max_us_{0};
  std::atomic<uint64_t> invalidations_sent_{0};
  std::atomic<uint64_t> announcements_published_{0};
  std::atomic<uint64_t> announcements_received_{0};
  std::atomic<uint64_t> announcements_malformed_{0};
  std::atomic<uint64_t> resubscriptions_{0};

  // Last: their callbacks use the fields above, and they are destroyed (joined with the loop)
  // first.
  std::unique_ptr<RedisConnection> connection_;
  std::unique_ptr<RedisSubscriber> subscriber_;
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_FLEET_STORE_H_
