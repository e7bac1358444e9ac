#include "server/fleet/redis_fleet_store.h"

#include <algorithm>
#include <cassert>
#include <deque>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "server/fleet/redis_fleet_codec.h"

namespace flightcache {
namespace {

// The entry and its remaining TTL in one round trip, atomically. KEYS[1] entry.
constexpr absl::string_view kReadScript = R"lua(
local entry = redis.call('GET', KEYS[1])
if not entry then return false end
return {entry, redis.call('PTTL', KEYS[1])}
)lua";

// KEYS[1] entry, KEYS[2] lease; ARGV[1] token, ARGV[2] ttl ms. 1 if taken; 0 if it is held, or
// if the entry is there already: between a sidecar's Read miss and its TakeLease, the holder may
// have published and given the lease up, and a lease taken then would fetch the key again.
constexpr absl::string_view kTakeLeaseScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
)lua";

// KEYS[1] lease; ARGV[1] token, ARGV[2] ttl ms. 1 if extended, 0 if the lease is not the token's.
constexpr absl::string_view kRenewScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
)lua";

// KEYS[1] entry, KEYS[2] lease; ARGV[1] token, ARGV[2] channel, ARGV[3] announcement, and when
// an entry is stored: ARGV[4] encoded entry, ARGV[5] its ttl ms. 1 if published, 0 if the lease
// is not the token's (nothing done).
constexpr absl::string_view kPublishScript = R"lua(
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if #ARGV >= 5 then redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
)lua";

// KEYS[1] entry, KEYS[2] lease; ARGV[1] channel, ARGV[2] announcement.
constexpr absl::string_view kInvalidateScript = R"lua(
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
)lua";

// Longer TTLs are cut to this: Redis refuses an expiry that overflows its clock.
constexpr absl::Duration kMaxTtl = absl::Hours(24 * 365);

// A TTL as Redis' PX / PEXPIRE argument: whole milliseconds, rounded up, in [1 ms, kMaxTtl].
std::string TtlMillis(absl::Duration ttl) {
  const absl::Duration clamped =
      std::clamp(absl::Ceil(ttl, absl::Milliseconds(1)), absl::Milliseconds(1), kMaxTtl);
  return absl::StrCat(absl::ToInt64Milliseconds(clamped));
}

std::string RandomInstanceId() {
  std::random_device random;
  uint64_t high = (uint64_t{random()} << 32) | random();
  uint64_t low = (uint64_t{random()} << 32) | random();
  return absl::StrFormat("%016x%016x", high, low);
}

absl::Status Unexpected(absl::string_view command, const RedisReply& reply) {
  return absl::InternalError(
      absl::StrCat("unexpected reply to ", command, " (type ", static_cast<int>(reply.type), ")"));
}

absl::StatusOr<std::optional<FleetEntry>> ReadResult(RedisReply reply) {
  if (reply.is_nil()) return std::nullopt;
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != 2 ||
      reply.elements[0].type != RedisReply::Type::kString ||
      reply.elements[1].type != RedisReply::Type::kInteger) {
    return Unexpected("the read script", reply);
  }
  const int64_t pttl = reply.elements[1].integer;
  // -1: stored without an expiry (not by a sidecar); -2 cannot follow a GET that found it.
  if (pttl < -1) return Unexpected("the read script's PTTL", reply);
  const absl::Duration ttl = pttl == -1 ? absl::InfiniteDuration() : absl::Milliseconds(pttl);
  absl::StatusOr<FleetEntry> entry = DecodeFleetEntry(reply.elements[0].str, ttl);
  if (!entry.ok()) return absl::InternalError(entry.status().message());
  return std::optional<FleetEntry>(*std::move(entry));
}

// The scripts that answer 1 (done) or 0 (the lease is not the token's).
absl::StatusOr<bool> ScriptFlag(absl::string_view script, const RedisReply& reply) {
  if (reply.type != RedisReply::Type::kInteger || (reply.integer != 0 && reply.integer != 1)) {
    return Unexpected(script, reply);
  }
  return reply.integer == 1;
}

}  // namespace

// Runs listener calls on the worker pool one at a time, in the order they were queued, and lets
// SetListener wait for the call in progress. Shared with the drain tasks it posts, so that a task
// still queued when the store is gone finds it alive (and, the listener being null by then,
// calls nothing).
class RedisFleetStore::ListenerDispatch final
    : public std::enable_shared_from_this<ListenerDispatch> {
 public:
  explicit ListenerDispatch(WorkerPool& workers) : workers_(workers) {}

  // `announcement`, or OnResubscribed when nullopt. Dropped if no listener is set when its turn
  // comes.
  void Enqueue(std::optional<FleetAnnouncement> announcement) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(announcement));
    if (draining_) return;
    draining_ = true;
    workers_.Post([self = shared_from_this()] { self->Drain(); });
  }

  void SetListener(FleetListener* listener) {
    absl::MutexLock lock(&mu_);
    listener_ = listener;
    // From inside a listener call: that call is the only one running, and it is the caller's.
    if (calling_ && calling_thread_ == std::this_thread::get_id()) return;
    mu_.Await(absl::Condition(
        +[](bool* calling) { return !*calling; }, &calling_));
  }

 private:
  // Calls a bounded batch, then makes way for other work on the pool.
  static constexpr int kBatch = 64;

  void Drain() {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < kBatch && !queue_.empty(); ++i) {
      std::optional<FleetAnnouncement> announcement = std::move(queue_.front());
      queue_.pop_front();
      FleetListener* listener = listener_;
      if (listener == nullptr) continue;
      calling_ = true;
      calling_thread_ = std::this_thread::get_id();
      mu_.Unlock();
      if (announcement.has_value()) {
        listener->OnAnnouncement(*announcement);
      } else {
        listener->OnResubscribed();
      }
      mu_.Lock();
      calling_ = false;
    }
    if (queue_.empty()) {
      draining_ = false;
    } else {
      workers_.Post([self = shared_from_this()] { self->Drain(); });
    }
  }

  WorkerPool& workers_;
  absl::Mutex mu_;
  FleetListener* listener_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<std::optional<FleetAnnouncement>> queue_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // a Drain task is posted or running
  bool calling_ ABSL_GUARDED_BY(mu_) = false;   // a listener call is running, on calling_thread_
  std::thread::id calling_thread_ ABSL_GUARDED_BY(mu_);
};

RedisFleetStore::RedisFleetStore(EventLoop& loop, const RedisOptions& redis, WorkerPool& workers,
                                 RedisFleetStoreOptions options)
    : workers_(workers),
      prefix_(std::move(options.key_prefix)),
      channel_(FleetAnnounceChannel(prefix_)),
      instance_id_(RandomInstanceId()),
      on_call_(std::move(options.on_call)),
      on_state_change_(std::move(options.on_state_change)),
      dispatch_(std::make_shared<ListenerDispatch>(workers)) {
  assert(ValidateFleetKeyPrefix(prefix_).ok());
  connection_ = std::make_unique<RedisConnection>(
      loop, redis,
      RedisConnection::Observers{
          .on_state =
              [this](RedisState) {
                if (on_state_change_) on_state_change_();
              },
          .on_call = [this](absl::StatusCode code,
                            absl::Duration latency) { OnCall(code, latency); },
      });
  subscriber_ = std::make_unique<RedisSubscriber>(
      loop, redis, std::vector<std::string>{channel_},
      RedisSubscriber::Callbacks{
          .on_message = [this](absl::string_view,
                               absl::string_view message) { OnMessage(message); },
          .on_resubscribed =
              [this] {
                resubscriptions_.fetch_add(1, std::memory_order_relaxed);
                dispatch_->Enqueue(std::nullopt);
              },
          .on_state =
              [this](RedisState) {
                if (on_state_change_) on_state_change_();
              },
      });
}

RedisFleetStore::~RedisFleetStore() {
  // The subscriber first: no announcement is queued after this. The connection's destructor
  // completes what is outstanding with CANCELLED (posted to the pool).
  subscriber_.reset();
  connection_.reset();
  // Announcements still queued on the pool are dropped: nobody calls a listener for a store that
  // is gone.
  dispatch_->SetListener(nullptr);
}

void RedisFleetStore::SetListener(FleetListener* listener) { dispatch_->SetListener(listener); }

bool RedisFleetStore::CanWait() const { return subscriber_->state() == RedisState::kConnected; }

template <typename T, typename Convert>
void RedisFleetStore::Call(std::vector<std::string>&& args, Convert convert, Callback<T> done) {
  connection_->Command(
      std::move(args), [&workers = workers_, convert = std::move(convert),
                        done = std::move(done)](absl::StatusOr<RedisReply> reply) mutable {
        // On the loop thread: everything else, the conversion included, on a worker.
        workers.Post([convert = std::move(convert), done = std::move(done),
                      reply = std::move(reply)]() mutable {
          absl::StatusOr<T> result = reply.ok() ? convert(*std::move(reply))
                                                : absl::StatusOr<T>(std::move(reply).status());
          std::move(done)(std::move(result));
        });
      });
}

void RedisFleetStore::Read(const std::string& key, Callback<std::optional<FleetEntry>> done) {
  RedisFleetKeys keys = MakeRedisFleetKeys(prefix_, key);
  Call<std::optional<FleetEntry>>({"EVAL", std::string(kReadScript), "1", std::move(keys.entry)},
                                  &ReadResult, std::move(done));
}

void RedisFleetStore::TakeLease(const std::string& key, const std::string& token,
                                absl::Duration ttl, Callback<bool> done) {
  RedisFleetKeys keys = MakeRedisFleetKeys(prefix_, key);
  Call<bool>(
      {"EVAL", std::string(kTakeLeaseScript), "2", std::move(keys.entry), std::move(keys.lease),
       token, TtlMillis(ttl)},
      [](const RedisReply& reply) { return ScriptFlag("the take-lease script", reply); },
      std::move(done));
}

void RedisFleetStore::RenewLease(const std::string& key, const std::string& token,
                                 absl::Duration ttl, Callback<bool> done) {
  RedisFleetKeys keys = MakeRedisFleetKeys(prefix_, key);
  Call<bool>(
      {"EVAL", std::string(kRenewScript), "1", std::move(keys.lease), token, TtlMillis(ttl)},
      [](const RedisReply& reply) { return ScriptFlag("the renew script", reply); },
      std::move(done));
}

void RedisFleetStore::Publish(const std::string& key, const std::string& token,
                              std::optional<FleetEntry> entry, FleetAnnouncement announcement,
                              Callback<bool> done) {
  RedisFleetKeys keys = MakeRedisFleetKeys(prefix_, key);
  std::vector<std::string> args = {"EVAL",
                                   std::string(kPublishScript),
                                   "2",
                                   std::move(keys.entry),
                                   std::move(keys.lease),
                                   token,
                                   channel_,
                                   EncodeAnnouncement(instance_id_, announcement)};
  if (entry.has_value()) {
    args.push_back(EncodeFleetEntry(*entry));
    args.push_back(TtlMillis(entry->ttl_remaining));
  }
  // Converted on the loop thread, where the store is alive to count it, then sent to a worker.
  connection_->Command(
      std::move(args), [this, done = std::move(done)](absl::StatusOr<RedisReply> reply) mutable {
        absl::StatusOr<bool> published = reply.ok()
                                             ? ScriptFlag("the publish script", *reply)
                                             : absl::StatusOr<bool>(std::move(reply).status());
        if (published.ok() && *published) {
          announcements_published_.fetch_add(1, std::memory_order_relaxed);
        }
        workers_.Post([done = std::move(done), published = std::move(published)]() mutable {
          std::move(done)(std::move(published));
        });
      });
}

void RedisFleetStore::Invalidate(std::vector<std::string> keys, DoneCallback done) {
  if (keys.empty()) {
    workers_.Post([done = std::move(done)]() mutable { std::move(done)(absl::OkStatus()); });
    return;
  }
  // One command per key, pipelined. Their callbacks all run on the loop thread, one at a time:
  // the batch needs no lock.
  struct Batch {
    size_t remaining;
    absl::Status first_error;
    DoneCallback done;
  };
  auto batch = std::make_shared<Batch>(Batch{keys.size(), absl::OkStatus(), std::move(done)});
  for (std::string& key : keys) {
    RedisFleetKeys names = MakeRedisFleetKeys(prefix_, key);
    std::string message = EncodeAnnouncement(
        instance_id_, {.kind = FleetAnnouncement::Kind::kInvalidated, .key = std::move(key)});
    connection_->Command(
        {"EVAL", std::string(kInvalidateScript), "2", std::move(names.entry),
         std::move(names.lease), channel_, std::move(message)},
        [this, batch](absl::StatusOr<RedisReply> reply) {
          // Moved, not copied, here and below: a status crosses threads with one owner at a
          // time.
          absl::Status status;
          if (!reply.ok()) {
            status = std::move(reply).status();
          } else if (!(reply->type == RedisReply::Type::kInteger && reply->integer == 1)) {
            status = Unexpected("the invalidate script", *reply);
          }
          if (status.ok()) {
            invalidations_sent_.fetch_add(1, std::memory_order_relaxed);
            announcements_published_.fetch_add(1, std::memory_order_relaxed);
          } else if (batch->first_error.ok()) {
            batch->first_error = std::move(status);
          }
          if (--batch->remaining > 0) return;
          workers_.Post(
              [done = std::move(batch->done), status = std::move(batch->first_error)]() mutable {
                std::move(done)(std::move(status));
              });
        });
  }
}

void RedisFleetStore::OnCall(absl::StatusCode code, absl::Duration latency) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (code != absl::StatusCode::kOk) call_errors_.fetch_add(1, std::memory_order_relaxed);
  if (code == absl::StatusCode::kDeadlineExceeded) {
    call_timeouts_.fetch_add(1, std::memory_order_relaxed);
  }
  const int64_t us = absl::ToInt64Microseconds(latency);
  call_latency_total_us_.fetch_add(us, std::memory_order_relaxed);
  // Only the loop thread writes it: no compare-and-swap needed.
  if (us > call_latency_max_us_.load(std::memory_order_relaxed)) {
    call_latency_max_us_.store(us, std::memory_order_relaxed);
  }
  if (on_call_) on_call_(code, latency);
}

void RedisFleetStore::OnMessage(absl::string_view message) {
  absl::StatusOr<DecodedAnnouncement> decoded = DecodeAnnouncement(message);
  if (!decoded.ok()) {
    announcements_malformed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (decoded->sender == instance_id_) return;  // our own: our flights know already
  announcements_received_.fetch_add(1, std::memory_order_relaxed);
  dispatch_->Enqueue(std::move(decoded->announcement));
}

RedisFleetStoreStats RedisFleetStore::stats() const {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  return {
      .commands_state = connection_->state(),
      .subscriber_state = subscriber_->state(),
      .calls = calls_.load(kRelaxed),
      .call_errors = call_errors_.load(kRelaxed),
      .call_timeouts = call_timeouts_.load(kRelaxed),
      .call_latency_total = absl::Microseconds(call_latency_total_us_.load(kRelaxed)),
      .call_latency_max = absl::Microseconds(call_latency_max_us_.load(kRelaxed)),
      .invalidations_sent = invalidations_sent_.load(kRelaxed),
      .announcements_published = announcements_published_.load(kRelaxed),
      .announcements_received = announcements_received_.load(kRelaxed),
      .announcements_malformed = announcements_malformed_.load(kRelaxed),
      .resubscriptions = resubscriptions_.load(kRelaxed),
  };
}

}  // namespace flightcache
