// RedisLink: one hiredis connection kept alive on an EventLoop. Internal to server/fleet: the
// part that RedisConnection (commands) and RedisSubscriber (pub/sub) share.
//
// It connects (asynchronously, hiredis' async API driven by the loop's epoll), runs the
// handshake (AUTH when there is a password, SELECT when the database is not 0, then PING, so that
// a Redis that accepts connections but does not answer, e.g. stopped with SIGSTOP, never counts
// as connected), and hands the context to its owner, which declares it ready (MarkReady). When
// the connection fails, is dropped or the handshake does not finish within connect_timeout, it
// reconnects after an exponential backoff with jitter. The state (connected / degraded) is
// observable from any thread; each change is logged once and reported to the owner.
//
// Thread-safety: state() is thread-safe; everything else runs on the loop thread.
// Lifetime: Stop() on the loop thread before destruction; then the link has no timer, watch or
// context left and may be destroyed on any thread.
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_LINK_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_LINK_H_

#include <atomic>
#include <random>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_options.h"

struct redisAsyncContext;

namespace flightcache {

enum class RedisState {
  kConnecting,  // before the first attempt has succeeded or failed
  kConnected,   // ready: commands are sent
  kDegraded,    // no usable connection: calls fail fast, reconnecting with backoff
};
const char* RedisStateName(RedisState state);

class RedisLink final {
 public:
  struct Hooks {
    // The handshake is done on `context`: the owner sends its own set-up, if any, and calls
    // MarkReady() (within connect_timeout of the attempt's start).
    absl::AnyInvocable<void(redisAsyncContext* context)> on_handshake;
    // The context is going away (failed, dropped or stopped). hiredis has already called every
    // pending callback with a null reply; the context must not be used any more.
    absl::AnyInvocable<void()> on_lost;
    // The state changed (after it was logged). May be empty.
    absl::AnyInvocable<void(RedisState)> on_state;
  };

  // `role` names the connection in log lines ("commands", "subscriber").
  RedisLink(EventLoop& loop, const RedisOptions& options, std::string role, Hooks hooks);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  // The first connection attempt.
  void Start();
  // Closes the connection for good: no reconnect, no timer left.
  void Stop();
  // Closes this connection (`reason` is logged) and reconnects after a backoff. From inside a
  // hiredis callback too (hiredis then closes it once the callback returns).
  void Drop(std::string reason);
  // The connection is usable: state becomes connected and the backoff starts over.
  void MarkReady();

  // The ready context, or null.
  redisAsyncContext* ready_context() const { return ready_ ? context_ : nullptr; }
  // Why the current context is failing its callbacks with null replies (for their errors).
  std::string CloseReason() const;
  bool stopped() const { return stopped_; }
  RedisState state() const { return state_.load(std::memory_order_acquire); }
  const RedisOptions& options() const { return options_; }
  const std::string& name() const { return name_; }

 private:
  void Connect();
  void AttemptFailed(std::string reason);
  void ScheduleReconnect();
  void SetState(RedisState state, const std::string& reason);
  void OnEvents(uint32_t events);
  void OnContextGone();
  void UpdateInterest();

  // hiredis' event hooks (addRead, delRead, addWrite, delWrite): what it waits for.
  template <bool RedisLink::*kWant, bool kOn>
  static void Want(void* link);
  static void Cleanup(void* link);
  static void OnHandshakeReply(redisAsyncContext* context, void* reply, void* link);

  EventLoop& loop_;
  const RedisOptions options_;
  const std::string name_;  // "redis HOST:PORT/DB (role)"
  Hooks hooks_;
  // Written on the loop thread, read anywhere: release/acquire so that a reader that sees
  // kConnected also sees what the loop did before (nothing else is published through it).
  std::atomic<RedisState> state_{RedisState::kConnecting};

  // Loop thread only.
  redisAsyncContext* context_ = nullptr;
  EventLoop::WatchId watch_ = EventLoop::kNoWatch;
  bool want_read_ = false;
  bool want_write_ = false;
  bool ready_ = false;
  bool stopped_ = false;
  int handshake_replies_pending_ = 0;
  std::string drop_reason_;  // set by Drop()/Stop() until the context is gone
  EventLoop::TimerId handshake_timer_ = EventLoop::kNoTimer;
  EventLoop::TimerId reconnect_timer_ = EventLoop::kNoTimer;
  int failures_ = 0;  // attempts failed since the last ready connection
  absl::Time degraded_since_ = absl::InfinitePast();
  std::mt19937 jitter_{std::random_device{}()};
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_LINK_H_
