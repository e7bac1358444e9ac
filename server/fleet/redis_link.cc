#include "server/fleet/redis_link.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace flightcache {

const char* RedisStateName(RedisState state) {
  switch (state) {
    case RedisState::kConnecting:
      return "connecting";
    case RedisState::kConnected:
      return "connected";
    case RedisState::kDegraded:
      return "degraded";
  }
  return "unknown";
}

RedisLink::RedisLink(EventLoop& loop, const RedisOptions& options, std::string role, Hooks hooks)
    : loop_(loop),
      options_(options),
      name_(absl::StrCat("redis ", options.endpoint.ToString(), " (", role, ")")),
      hooks_(std::move(hooks)) {}

RedisLink::~RedisLink() {
  // Stop() ran on the loop thread: nothing of ours is left there.
  assert(context_ == nullptr && handshake_timer_ == EventLoop::kNoTimer &&
         reconnect_timer_ == EventLoop::kNoTimer);
}

void RedisLink::Start() { Connect(); }

void RedisLink::Stop() {
  stopped_ = true;
  loop_.Cancel(reconnect_timer_);
  reconnect_timer_ = EventLoop::kNoTimer;
  if (context_ != nullptr) {
    drop_reason_ = "the connection is shutting down";
    // Not inside a hiredis callback (Stop runs from a task): frees at once, OnContextGone runs.
    redisAsyncFree(context_);
  }
  assert(context_ == nullptr);
}

void RedisLink::Drop(std::string reason) {
  if (context_ == nullptr || !drop_reason_.empty()) return;
  drop_reason_ = std::move(reason);
  ready_ = false;
  // Inside a hiredis callback hiredis defers the free until the callback returns.
  redisAsyncFree(context_);
}

void RedisLink::MarkReady() {
  loop_.Cancel(handshake_timer_);
  handshake_timer_ = EventLoop::kNoTimer;
  ready_ = true;
  SetState(RedisState::kConnected, "");
  failures_ = 0;
}

std::string RedisLink::CloseReason() const {
  if (!drop_reason_.empty()) return drop_reason_;
  if (context_ != nullptr && context_->err != 0 && context_->errstr != nullptr) {
    return context_->errstr;
  }
  return "the connection closed";
}

void RedisLink::Connect() {
  reconnect_timer_ = EventLoop::kNoTimer;
  // hiredis 0.14 resolves a host name here, synchronously (getaddrinfo): an address, or a name
  // the local resolver answers at once (a Kubernetes Service), keeps the loop responsive.
  redisAsyncContext* context =
      redisAsyncConnect(options_.endpoint.host.c_str(), options_.endpoint.port);
  if (context == nullptr) {
    AttemptFailed("out of memory");
    return;
  }
  if (context->err != 0) {
    std::string reason = context->errstr;
    redisAsyncFree(context);  // no hooks attached yet: only frees
    AttemptFailed(std::move(reason));
    return;
  }
  context_ = context;
  want_read_ = want_write_ = false;
  watch_ = loop_.Watch(context->c.fd, [this](uint32_t events) { OnEvents(events); });
  context->ev.data = this;
  context->ev.addRead = &Want<&RedisLink::want_read_, true>;
  context->ev.delRead = &Want<&RedisLink::want_read_, false>;
  context->ev.addWrite = &Want<&RedisLink::want_write_, true>;
  context->ev.delWrite = &Want<&RedisLink::want_write_, false>;
  context->ev.cleanup = &Cleanup;
  // The first write event says the connect finished: hiredis asks for it when the connect
  // callback is set, so the hooks above come first. Success or failure shows in the handshake.
  redisAsyncSetConnectCallback(context, [](const redisAsyncContext*, int) {});
  handshake_timer_ = loop_.RunAfter(options_.connect_timeout, [this] {
    handshake_timer_ = EventLoop::kNoTimer;
    Drop(absl::StrCat("not connected within ", absl::FormatDuration(options_.connect_timeout)));
  });
  // Pipelined: a failing step fails the ones after it too, and the first failure drops.
  handshake_replies_pending_ = 0;
  if (!options_.password.empty()) {
    redisAsyncCommand(context, &OnHandshakeReply, this, "AUTH %b", options_.password.data(),
                      options_.password.size());
    ++handshake_replies_pending_;
  }
  if (options_.endpoint.db != 0) {
    redisAsyncCommand(context, &OnHandshakeReply, this, "SELECT %d", options_.endpoint.db);
    ++handshake_replies_pending_;
  }
  redisAsyncCommand(context, &OnHandshakeReply, this, "PING");
  ++handshake_replies_pending_;
}

void RedisLink::OnHandshakeReply(redisAsyncContext* context, void* reply, void* link) {
  auto* self = static_cast<RedisLink*>(link);
  // A null reply: the context is going away, OnContextGone follows.
  if (reply == nullptr || self->context_ != context) return;
  const auto* r = static_cast<const redisReply*>(reply);
  if (r->type == REDIS_REPLY_ERROR) {
    // Wrong password, no such database: configuration, but retried (a password file may be
    // rotated, a Redis restarted with other settings).
    self->Drop(absl::StrCat("Redis refused the handshake: ", absl::string_view(r->str, r->len)));
    return;
  }
  if (--self->handshake_replies_pending_ == 0 && self->hooks_.on_handshake) {
    self->hooks_.on_handshake(context);
  }
}

void RedisLink::AttemptFailed(std::string reason) {
  SetState(RedisState::kDegraded, reason);
  ScheduleReconnect();
}

void RedisLink::ScheduleReconnect() {
  if (stopped_) return;
  const int doublings = std::min(failures_, 30);
  absl::Duration delay = std::min(options_.max_backoff, options_.min_backoff * (1LL << doublings));
  delay *= std::uniform_real_distribution<double>(0.5, 1.0)(jitter_);
  ++failures_;
  reconnect_timer_ = loop_.RunAfter(delay, [this] { Connect(); });
}

void RedisLink::SetState(RedisState state, const std::string& reason) {
  const RedisState old = state_.exchange(state, std::memory_order_acq_rel);
  if (old == state) {
    spdlog::debug("fleet: {} still {}: {}", name_, RedisStateName(state), reason);
    return;
  }
  if (state == RedisState::kConnected) {
    if (old == RedisState::kConnecting) {
      spdlog::info("fleet: {} connected", name_);
    } else {
      spdlog::info("fleet: {} connected again after {} ({} attempts)", name_,
                   absl::FormatDuration(
                       absl::Trunc(EventLoop::Now() - degraded_since_, absl::Milliseconds(1))),
                   failures_);
    }
  } else {
    degraded_since_ = EventLoop::Now();
    spdlog::warn("fleet: {} unavailable: {}; going on without it, reconnecting with backoff", name_,
                 reason);
  }
  if (hooks_.on_state) hooks_.on_state(state);
}

void RedisLink::OnEvents(uint32_t events) {
  // A context freed by one handler call is not used by the next: hiredis called Cleanup, which
  // cleared context_, and a new context is only made by a later timer.
  if (context_ != nullptr && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
    redisAsyncHandleRead(context_);
  }
  if (context_ != nullptr && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
    redisAsyncHandleWrite(context_);
  }
}

void RedisLink::OnContextGone() {
  // Called by hiredis while it frees the context (after the null replies, before close()).
  const std::string reason = CloseReason();
  const bool was_ready = ready_;
  loop_.Unwatch(watch_);
  watch_ = EventLoop::kNoWatch;
  loop_.Cancel(handshake_timer_);
  handshake_timer_ = EventLoop::kNoTimer;
  context_ = nullptr;
  ready_ = false;
  drop_reason_.clear();
  if (hooks_.on_lost) hooks_.on_lost();
  if (stopped_) return;
  if (was_ready) failures_ = 0;
  AttemptFailed(reason);
}

void RedisLink::UpdateInterest() { loop_.SetInterest(watch_, want_read_, want_write_); }

template <bool RedisLink::*kWant, bool kOn>
void RedisLink::Want(void* link) {
  auto* self = static_cast<RedisLink*>(link);
  self->*kWant = kOn;
  self->UpdateInterest();
}

void RedisLink::Cleanup(void* link) { static_cast<RedisLink*>(link)->OnContextGone(); }

}  // namespace flightcache
