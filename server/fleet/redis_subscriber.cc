#include "server/fleet/redis_subscriber.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

absl::string_view Str(const redisReply* r) {
  return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
             ? absl::string_view(r->str, r->len)
             : absl::string_view();
}

}  // namespace

RedisSubscriber::RedisSubscriber(EventLoop& loop, const RedisOptions& options,
                                 std::vector<std::string> channels, Callbacks callbacks)
    : loop_(loop),
      options_(options),
      channels_(std::move(channels)),
      callbacks_(std::move(callbacks)),
      link_(loop, options, "subscriber",
            RedisLink::Hooks{
                .on_handshake = [this](redisAsyncContext* context) { Subscribe(context); },
                .on_lost = [this] { OnLost(); },
                .on_state = std::move(callbacks_.on_state),
            }) {
  assert(options.Validate().ok() && !channels_.empty());
  loop_.Post([this] { link_.Start(); });
}

RedisSubscriber::~RedisSubscriber() {
  loop_.RunSync([this] { link_.Stop(); });
}

void RedisSubscriber::Subscribe(redisAsyncContext* context) {
  std::vector<const char*> argv = {"SUBSCRIBE"};
  std::vector<size_t> lengths = {9};
  for (const std::string& channel : channels_) {
    argv.push_back(channel.data());
    lengths.push_back(channel.size());
  }
  confirmations_pending_ = channels_.size();
  redisAsyncCommandArgv(context, &OnSubscriptionReply, this, static_cast<int>(argv.size()),
                        argv.data(), lengths.data());
}

void RedisSubscriber::OnSubscriptionReply(redisAsyncContext* context, void* reply,
                                          void* subscriber) {
  auto* self = static_cast<RedisSubscriber*>(subscriber);
  // A null reply: the connection is going away, OnLost follows.
  if (reply == nullptr) return;
  // hiredis 0.14 may hand this callback replies that are not ours (it reuses the last pub/sub
  // callback for an unknown one): anything but a well-formed message or confirmation is ignored.
  const auto* r = static_cast<const redisReply*>(reply);
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
  const absl::string_view kind = Str(r->element[0]);
  if (kind == "message") {
    if (self->callbacks_.on_message) {
      self->callbacks_.on_message(Str(r->element[1]), Str(r->element[2]));
    }
    return;
  }
  if (kind != "subscribe") return;
  if (self->link_.ready_context() != nullptr) {
    // The answer to a probe.
    self->probe_outstanding_ = false;
    return;
  }
  if (self->confirmations_pending_ == 0 || --self->confirmations_pending_ > 0) return;
  // The owner hears of missed messages before the state says connected again.
  if (self->subscribed_before_ && self->callbacks_.on_resubscribed) {
    self->callbacks_.on_resubscribed();
  }
  self->subscribed_before_ = true;
  self->link_.MarkReady();
  self->ScheduleProbe();
}

void RedisSubscriber::OnLost() {
  confirmations_pending_ = 0;
  probe_outstanding_ = false;
  loop_.Cancel(probe_timer_);
  probe_timer_ = EventLoop::kNoTimer;
}

void RedisSubscriber::ScheduleProbe() {
  probe_timer_ = loop_.RunAfter(options_.subscriber_probe_interval, [this] {
    probe_timer_ = EventLoop::kNoTimer;
    Probe();
  });
}

void RedisSubscriber::Probe() {
  redisAsyncContext* context = link_.ready_context();
  if (context == nullptr) return;
  const char* argv[] = {"SUBSCRIBE", channels_.front().data()};
  const size_t lengths[] = {9, channels_.front().size()};
  redisAsyncCommandArgv(context, &OnSubscriptionReply, this, 2, argv, lengths);
  probe_outstanding_ = true;
  probe_timer_ = loop_.RunAfter(options_.stall_timeout, [this] {
    probe_timer_ = EventLoop::kNoTimer;
    if (!probe_outstanding_) {
      ScheduleProbe();
      return;
    }
    link_.Drop(
        absl::StrCat("no answer to a probe within ", absl::FormatDuration(options_.stall_timeout)));
  });
}

}  // namespace flightcache
