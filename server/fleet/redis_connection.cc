#include "server/fleet/redis_connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace flightcache {
namespace {

RedisReply ToRedisReply(const redisReply& r) {
  RedisReply reply;
  switch (r.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      reply.type = r.type == REDIS_REPLY_STRING   ? RedisReply::Type::kString
                   : r.type == REDIS_REPLY_STATUS ? RedisReply::Type::kStatus
                                                  : RedisReply::Type::kError;
      reply.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      reply.type = RedisReply::Type::kInteger;
      reply.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      reply.type = RedisReply::Type::kArray;
      reply.elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i) reply.elements.push_back(ToRedisReply(*r.element[i]));
      break;
    default:
      reply.type = RedisReply::Type::kNil;
  }
  return reply;
}

// Commands that would turn the connection into a subscriber (or a monitor): they have no
// single reply, and every later reply would be misread.
bool IsSubscriberCommand(absl::string_view name) {
  for (absl::string_view c : {"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
                              "punsubscribe", "sunsubscribe", "monitor"}) {
    if (absl::EqualsIgnoreCase(name, c)) return true;
  }
  return false;
}

}  // namespace

RedisConnection::RedisConnection(EventLoop& loop, const RedisOptions& options, Observers observers)
    : loop_(loop),
      options_(options),
      on_call_(std::move(observers.on_call)),
      link_(loop, options, "commands",
            RedisLink::Hooks{
                // Nothing to set up beyond the handshake.
                .on_handshake = [this](redisAsyncContext*) { link_.MarkReady(); },
                .on_lost = nullptr,
                .on_state = std::move(observers.on_state),
            }) {
  assert(options.Validate().ok());
  loop_.Post([this] { link_.Start(); });
}

RedisConnection::~RedisConnection() {
  loop_.RunSync([this] {
    shut_down_ = true;
    loop_.Cancel(timer_);
    timer_ = EventLoop::kNoTimer;
    // Fails what is in flight (CANCELLED, in OnReply) and leaves nothing on the loop.
    link_.Stop();
  });
}

void RedisConnection::Command(std::vector<std::string> args, Callback done) {
  const absl::Time deadline = EventLoop::Now() + options_.command_timeout;
  loop_.Post([this, args = std::move(args), done = std::move(done), deadline]() mutable {
    Send(std::move(args), std::move(done), deadline);
  });
}

void RedisConnection::Send(std::vector<std::string> args, Callback done, absl::Time deadline) {
  if (shut_down_) {
    Complete(std::move(done), deadline,
             absl::CancelledError("the fleet Redis connection is shutting down"));
    return;
  }
  if (args.empty() || IsSubscriberCommand(args.front())) {
    Complete(std::move(done), deadline,
             absl::InvalidArgumentError(
                 args.empty() ? "empty Redis command"
                              : absl::StrCat("'", args.front(), "' belongs to RedisSubscriber")));
    return;
  }
  redisAsyncContext* context = link_.ready_context();
  if (context == nullptr) {
    Complete(std::move(done), deadline,
             absl::UnavailableError(absl::StrCat(link_.name(), " is not connected")));
    return;
  }
  if (EventLoop::Now() >= deadline) {
    Complete(std::move(done), deadline,
             absl::DeadlineExceededError(
                 absl::StrCat("the fleet event loop took longer than ",
                              absl::FormatDuration(options_.command_timeout), " to send it")));
    return;
  }
  if (in_flight_.size() >= options_.max_in_flight) {
    Complete(std::move(done), deadline,
             absl::ResourceExhaustedError(
                 absl::StrCat(link_.name(), ": ", in_flight_.size(), " commands in flight")));
    return;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  // Commands posted from several threads reach the loop in an order their clock reads may not
  // share by a few microseconds: keep deadlines non-decreasing along in_flight_.
  last_deadline_ = std::max(last_deadline_, deadline);
  auto call = std::make_unique<InFlight>(InFlight{this, std::move(done), last_deadline_});
  if (redisAsyncCommandArgv(context, &OnReply, call.get(), static_cast<int>(args.size()),
                            argv.data(), lengths.data()) != REDIS_OK) {
    Complete(std::move(call->done), deadline,
             absl::UnavailableError(absl::StrCat(link_.name(), " is closing")));
    return;
  }
  in_flight_.push_back(std::move(call));
  ArmTimer();
}

void RedisConnection::OnReply(redisAsyncContext* context, void* reply, void* in_flight) {
  RedisConnection* self = static_cast<InFlight*>(in_flight)->owner;
  assert(!self->in_flight_.empty() && self->in_flight_.front().get() == in_flight);
  std::unique_ptr<InFlight> call = std::move(self->in_flight_.front());
  self->in_flight_.pop_front();
  if (self->expired_ > 0) {
    // Answered by its timeout already: the reply is dropped.
    --self->expired_;
    return;
  }
  absl::StatusOr<RedisReply> result;
  if (reply == nullptr) {
    result = self->shut_down_ ? absl::CancelledError("the fleet Redis connection is shutting down")
                              : absl::UnavailableError(absl::StrCat(self->link_.name(), ": ",
                                                                    self->link_.CloseReason()));
  } else if (const auto* r = static_cast<const redisReply*>(reply); r->type == REDIS_REPLY_ERROR) {
    result = absl::InternalError(absl::StrCat("Redis: ", absl::string_view(r->str, r->len)));
  } else {
    result = ToRedisReply(*r);
  }
  self->Complete(std::move(call->done), call->deadline, std::move(result));
}

void RedisConnection::Complete(Callback done, absl::Time deadline,
                               absl::StatusOr<RedisReply> result) {
  if (on_call_) {
    on_call_(result.status().code(), EventLoop::Now() - (deadline - options_.command_timeout));
  }
  std::move(done)(std::move(result));
}

void RedisConnection::ArmTimer() {
  absl::Time next = absl::InfiniteFuture();
  if (expired_ < in_flight_.size()) next = in_flight_[expired_]->deadline;
  if (!in_flight_.empty()) {
    // When the oldest command has waited stall_timeout (its send time is deadline - timeout).
    next = std::min(
        next, in_flight_.front()->deadline - options_.command_timeout + options_.stall_timeout);
  }
  if (next == absl::InfiniteFuture()) return;
  // An earlier timer is enough: it re-arms for what remains when it fires.
  if (timer_ != EventLoop::kNoTimer && timer_due_ <= next) return;
  loop_.Cancel(timer_);
  timer_due_ = next;
  timer_ = loop_.RunAt(next, [this] {
    timer_ = EventLoop::kNoTimer;
    OnTimer();
  });
}

void RedisConnection::OnTimer() {
  const absl::Time now = EventLoop::Now();
  while (expired_ < in_flight_.size() && in_flight_[expired_]->deadline <= now) {
    Callback done = std::move(in_flight_[expired_]->done);
    const absl::Time deadline = in_flight_[expired_]->deadline;
    ++expired_;
    // May call Command(), which only posts: in_flight_ is not touched under us.
    Complete(
        std::move(done), deadline,
        absl::DeadlineExceededError(absl::StrCat("no reply from ", link_.name(), " within ",
                                                 absl::FormatDuration(options_.command_timeout))));
  }
  if (!in_flight_.empty() &&
      now - (in_flight_.front()->deadline - options_.command_timeout) >= options_.stall_timeout) {
    // Not inside a hiredis callback: the context is freed now and every command still in
    // flight is failed through OnReply.
    link_.Drop(absl::StrCat("no reply for ", absl::FormatDuration(options_.stall_timeout), " (",
                            in_flight_.size(), " commands waiting)"));
    assert(in_flight_.empty());
    expired_ = 0;
    return;
  }
  ArmTimer();
}

}  // namespace flightcache
