// RedisFleetStore (server/fleet/redis_fleet_store.h) against a real redis-server that each test
// starts on a free port (tests/testing/redis_process.h): two stores on one Redis play two
// sidecars of a fleet. Reads, leases, publishing, announcements between them (never to the
// sender), invalidation, and a Redis that is killed, restarted or stopped. Every wait is bounded
// (kTestWait) and says what it waited for.
#include "server/fleet/redis_fleet_store.h"

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/fleet/event_loop.h"
#include "server/fleet/redis_connection.h"
#include "server/fleet/redis_fleet_codec.h"
#include "server/fleet/redis_fleet_keys.h"
#include "tests/testing/latch.h"
#include "tests/testing/redis_process.h"
#include "tests/testing/redis_test_options.h"

namespace flightcache {
namespace {

using ::flightcache::testing::kTestWait;
using ::flightcache::testing::RedisProcess;
using ::flightcache::testing::TestRedisOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = FleetAnnouncement::Kind;

// Room for a busy 2-core machine (and TSan) between a deadline and the callback it fires.
constexpr absl::Duration kMargin = absl::Milliseconds(500);

// One operation's outcome, its latency, and whether its callback ran on the loop thread. Shared
// with the callback, which may come after a failed wait.
template <typename T>
class Outcome : public std::enable_shared_from_this<Outcome<T>> {
 public:
  explicit Outcome(const EventLoop& loop) : loop_(loop) {}

  FleetStore::Callback<T> Callback() {
    return [self = this->shared_from_this()](absl::StatusOr<T> result) {
      absl::MutexLock lock(&self->mu_);
      self->elapsed_ = absl::Now() - self->start_;
      self->on_loop_thread_ = self->loop_.InLoopThread();
      self->result_ = std::move(result);
      ++self->times_;
    };
  }

  absl::StatusOr<T> Await() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return times_ > 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), kTestWait)) {
      return absl::InternalError("test: the callback never ran");
    }
    EXPECT_EQ(times_, 1) << "a callback ran more than once";
    EXPECT_FALSE(on_loop_thread_) << "a callback ran on the event-loop thread";
    // Moved out (Await is called once): the status is then owned by this thread alone.
    return std::move(result_);
  }
  absl::Duration elapsed() {
    absl::MutexLock lock(&mu_);
    return elapsed_;
  }

 private:
  const EventLoop& loop_;
  const absl::Time start_ = absl::Now();

  absl::Mutex mu_;
  int times_ ABSL_GUARDED_BY(mu_) = 0;
  bool on_loop_thread_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration elapsed_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<T> result_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
std::shared_ptr<Outcome<T>> NewOutcome(const EventLoop& loop) {
  return std::make_shared<Outcome<T>>(loop);
}

// What a listener heard, in order.
class RecordingListener : public FleetListener {
 public:
  void OnAnnouncement(const FleetAnnouncement& announcement) override {
    absl::MutexLock lock(&mu_);
    announcements_.push_back(announcement);
  }
  void OnResubscribed() override {
    absl::MutexLock lock(&mu_);
    ++resubscribed_;
  }

  [[nodiscard]] bool WaitForAnnouncements(size_t n, absl::Duration timeout = kTestWait) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return announcements_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  [[nodiscard]] bool WaitForResubscribed(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return resubscribed_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kTestWait);
  }
  std::vector<FleetAnnouncement> announcements() {
    absl::MutexLock lock(&mu_);
    return announcements_;
  }
  int resubscribed() {
    absl::MutexLock lock(&mu_);
    return resubscribed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<FleetAnnouncement> announcements_ ABSL_GUARDED_BY(mu_);
  int resubscribed_ ABSL_GUARDED_BY(mu_) = 0;
};

// True once `condition` holds; polled, bounded by `timeout`.
template <typename Condition>
[[nodiscard]] bool Eventually(Condition condition, absl::Duration timeout = kTestWait) {
  for (const absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline;) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

std::string Binary1KiB() {
  std::string bytes(1024, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 13 + 1);
  return bytes;
}

class RedisFleetStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.Log(); }

  RedisOptions Options() const { return TestRedisOptions(redis_.port()); }

  // A store ("a sidecar"), connected and subscribed.
  std::unique_ptr<RedisFleetStore> NewStore(const RedisOptions& options,
                                            FleetListener* listener = nullptr) {
    auto store = std::make_unique<RedisFleetStore>(loop_, options, workers_);
    if (listener != nullptr) store->SetListener(listener);
    EXPECT_TRUE(Eventually([&] {
      return store->CanWait() && store->stats().commands_state == RedisState::kConnected;
    })) << "the store never connected; redis log:\n"
        << redis_.Log();
    return store;
  }
  std::unique_ptr<RedisFleetStore> NewStore(FleetListener* listener = nullptr) {
    return NewStore(Options(), listener);
  }

  // Synchronous forms of the operations: their outcome once the callback ran.
  absl::StatusOr<std::optional<FleetEntry>> Read(FleetStore& store, const std::string& key) {
    auto outcome = NewOutcome<std::optional<FleetEntry>>(loop_);
    store.Read(key, outcome->Callback());
    return outcome->Await();
  }
  absl::StatusOr<bool> TakeLease(FleetStore& store, const std::string& key,
                                 const std::string& token, absl::Duration ttl = absl::Seconds(10)) {
    auto outcome = NewOutcome<bool>(loop_);
    store.TakeLease(key, token, ttl, outcome->Callback());
    return outcome->Await();
  }
  absl::StatusOr<bool> RenewLease(FleetStore& store, const std::string& key,
                                  const std::string& token, absl::Duration ttl) {
    auto outcome = NewOutcome<bool>(loop_);
    store.RenewLease(key, token, ttl, outcome->Callback());
    return outcome->Await();
  }
  absl::StatusOr<bool> Publish(FleetStore& store, const std::string& key, const std::string& token,
                               std::optional<FleetEntry> entry, FleetAnnouncement announcement) {
    auto outcome = NewOutcome<bool>(loop_);
    store.Publish(key, token, std::move(entry), std::move(announcement), outcome->Callback());
    return outcome->Await();
  }
  absl::Status Invalidate(FleetStore& store, std::vector<std::string> keys) {
    auto outcome = NewOutcome<bool>(loop_);
    FleetStore::Callback<bool> done = outcome->Callback();
    store.Invalidate(std::move(keys), [done = std::move(done)](absl::Status status) mutable {
      std::move(done)(status.ok() ? absl::StatusOr<bool>(true) : absl::StatusOr<bool>(status));
    });
    return outcome->Await().status();
  }
  // Takes the lease and publishes `announcement` (with `entry`) as its holder.
  void LoadAndPublish(FleetStore& store, const std::string& key, std::optional<FleetEntry> entry,
                      FleetAnnouncement announcement) {
    const std::string token = absl::StrCat("token-", absl::ToUnixNanos(absl::Now()));
    absl::StatusOr<bool> taken = TakeLease(store, key, token);
    ASSERT_TRUE(taken.ok()) << taken.status();
    ASSERT_TRUE(*taken) << "the lease of " << ::testing::PrintToString(key) << " was held";
    absl::StatusOr<bool> published =
        Publish(store, key, token, std::move(entry), std::move(announcement));
    ASSERT_TRUE(published.ok()) << published.status();
    ASSERT_TRUE(*published);
  }

  // A plain Redis connection, to look at what the store wrote.
  absl::StatusOr<RedisReply> Raw(std::vector<std::string> args) {
    if (raw_ == nullptr) {
      raw_ = std::make_unique<RedisConnection>(loop_, Options());
      EXPECT_TRUE(Eventually([&] { return raw_->state() == RedisState::kConnected; }));
    }
    absl::Mutex mu;
    bool done = false;
    absl::StatusOr<RedisReply> result;
    raw_->Command(std::move(args), [&](absl::StatusOr<RedisReply> reply) {
      absl::MutexLock lock(&mu);
      result = std::move(reply);
      done = true;
    });
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));  // RedisConnection answers every command within its timeout
    return result;
  }
  int64_t RawInteger(std::vector<std::string> args) {
    absl::StatusOr<RedisReply> reply = Raw(std::move(args));
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->integer : -1000;
  }

  RedisProcess redis_;
  EventLoop loop_;
  WorkerPool workers_{2};
  std::unique_ptr<RedisConnection> raw_;
};

TEST_F(RedisFleetStoreTest, ReadOfAnAbsentKeyIsNullopt) {
  std::unique_ptr<RedisFleetStore> store = NewStore();
  absl::StatusOr<std::optional<FleetEntry>> entry = Read(*store, "absent");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_FALSE(entry->has_value());
}

TEST_F(RedisFleetStoreTest, PublishedEntriesAreReadByTheOtherSidecarWithTheirTtl) {
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore();
  const std::string value = Binary1KiB();
  LoadAndPublish(*a, "k", FleetEntry{.value = value, .ttl_remaining = absl::Seconds(10)},
                 {.kind = Kind::kLoaded, .key = "k"});
  absl::StatusOr<std::optional<FleetEntry>> entry = Read(*b, "k");
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(entry->has_value());
  EXPECT_FALSE((*entry)->not_found);
  EXPECT_EQ((*entry)->value, value);
  EXPECT_LE((*entry)->ttl_remaining, absl::Seconds(10));
  EXPECT_GT((*entry)->ttl_remaining, absl::Seconds(10) - kMargin);

  LoadAndPublish(*a, "gone", FleetEntry{.not_found = true, .ttl_remaining = absl::Seconds(3)},
                 {.kind = Kind::kLoaded, .key = "gone"});
  entry = Read(*b, "gone");
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(entry->has_value());
  EXPECT_TRUE((*entry)->not_found);
  EXPECT_EQ((*entry)->value, "");
  EXPECT_LE((*entry)->ttl_remaining, absl::Seconds(3));
  EXPECT_GT((*entry)->ttl_remaining, absl::Seconds(3) - kMargin);

  // Publishing ended the lease (and, the entry being there, nobody takes a new one).
  const RedisFleetKeys names = MakeRedisFleetKeys("fc:", "k");
  EXPECT_EQ(RawInteger({"EXISTS", names.lease}), 0);
  EXPECT_FALSE(TakeLease(*b, "k", "b").value_or(true));
  // The entry is where the key layout says, encoded with its kind.
  absl::StatusOr<RedisReply> raw = Raw({"GET", names.entry});
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->str, "V" + value);
}

TEST_F(RedisFleetStoreTest, AnEntryWithAnUndecodableKindIsAnError) {
  std::unique_ptr<RedisFleetStore> store = NewStore();
  ASSERT_TRUE(Raw({"SET", MakeRedisFleetKeys("fc:", "k").entry, "Xjunk", "PX", "10000"}).ok());
  absl::StatusOr<std::optional<FleetEntry>> entry = Read(*store, "k");
  EXPECT_EQ(entry.status().code(), absl::StatusCode::kInternal) << entry.status();
}

TEST_F(RedisFleetStoreTest, LeaseIsExclusiveUntilItExpires) {
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore();
  constexpr absl::Duration kLeaseTtl = absl::Milliseconds(50);
  const absl::Time taken_at = absl::Now();
  EXPECT_TRUE(TakeLease(*a, "k", "a", kLeaseTtl).value_or(false));
  EXPECT_FALSE(TakeLease(*b, "k", "b", kLeaseTtl).value_or(true));
  EXPECT_FALSE(TakeLease(*a, "k", "a2", kLeaseTtl).value_or(true)) << "not even for its holder";

  // Once the lease has expired, the other sidecar takes it over (polled, bounded).
  bool taken = false;
  ASSERT_TRUE(Eventually([&] {
    taken = TakeLease(*b, "k", "b", absl::Seconds(10)).value_or(false);
    return taken;
  })) << "the expired lease was never taken over";
  EXPECT_GE(absl::Now() - taken_at, kLeaseTtl - absl::Milliseconds(1));
  EXPECT_FALSE(TakeLease(*a, "k", "a", kLeaseTtl).value_or(true));
  // A TTL under a millisecond is one millisecond (PX 0 would be an error reply).
  const std::string lease = MakeRedisFleetKeys("fc:", "sub-ms").lease;
  EXPECT_TRUE(TakeLease(*a, "sub-ms", "a", absl::Microseconds(10)).value_or(false));
  const int64_t pttl = RawInteger({"PTTL", lease});
  EXPECT_TRUE(pttl == 1 || pttl == 0 || pttl == -2) << pttl;
}

// B read a miss just before A published and gave its lease up: B must not take a lease for a
// key that is in the store (it would fetch it again), whether it holds a value or NOT_FOUND.
TEST_F(RedisFleetStoreTest, NoLeaseIsTakenForAKeyWhoseEntryIsThere) {
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore();
  LoadAndPublish(*a, "k", FleetEntry{.value = "v", .ttl_remaining = absl::Seconds(10)},
                 {.kind = FleetAnnouncement::Kind::kLoaded, .key = "k"});
  LoadAndPublish(*a, "gone", FleetEntry{.not_found = true, .ttl_remaining = absl::Seconds(10)},
                 {.kind = FleetAnnouncement::Kind::kLoaded, .key = "gone"});
  EXPECT_FALSE(TakeLease(*b, "k", "b", absl::Seconds(1)).value_or(true));
  EXPECT_FALSE(TakeLease(*b, "gone", "b", absl::Seconds(1)).value_or(true));
  EXPECT_TRUE(TakeLease(*b, "absent", "b", absl::Seconds(1)).value_or(false));
}

TEST_F(RedisFleetStoreTest, RenewLeaseOnlyForItsHolderWhileItLasts) {
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore();
  const std::string lease = MakeRedisFleetKeys("fc:", "k").lease;
  ASSERT_TRUE(TakeLease(*a, "k", "a", absl::Milliseconds(500)).value_or(false));
  EXPECT_LE(RawInteger({"PTTL", lease}), 500);

  EXPECT_TRUE(RenewLease(*a, "k", "a", absl::Seconds(30)).value_or(false));
  EXPECT_GT(RawInteger({"PTTL", lease}), 29000) << "renewal did not extend the lease";
  EXPECT_FALSE(RenewLease(*b, "k", "b", absl::Seconds(60)).value_or(true));
  EXPECT_LE(RawInteger({"PTTL", lease}), 30000) << "a stranger extended the lease";

  // Expired: nobody's any more, not even its former holder's.
  ASSERT_TRUE(TakeLease(*a, "short", "a", absl::Milliseconds(20)).value_or(false));
  ASSERT_TRUE(Eventually([&] {
    return RawInteger({"EXISTS", MakeRedisFleetKeys("fc:", "short").lease}) == 0;
  })) << "the lease never expired";
  EXPECT_FALSE(RenewLease(*a, "short", "a", absl::Seconds(10)).value_or(true));
  EXPECT_EQ(RawInteger({"EXISTS", MakeRedisFleetKeys("fc:", "short").lease}), 0)
      << "renewal brought an expired lease back";
}

TEST_F(RedisFleetStoreTest, PublishByWhoNoLongerHoldsTheLeaseDoesNothing) {
  RecordingListener heard_by_b;
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore(&heard_by_b);

  // Voided by Invalidate while its holder was loading.
  ASSERT_TRUE(TakeLease(*a, "k", "a").value_or(false));
  ASSERT_TRUE(Invalidate(*b, {"k"}).ok());
  EXPECT_FALSE(Publish(*a, "k", "a", FleetEntry{.value = "late", .ttl_remaining = absl::Seconds(9)},
                       {.kind = Kind::kLoaded, .key = "k"})
                   .value_or(true));
  absl::StatusOr<std::optional<FleetEntry>> entry = Read(*b, "k");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_FALSE(entry->has_value()) << "a voided lease stored its value";

  // Taken over by another sidecar after it expired.
  ASSERT_TRUE(TakeLease(*b, "k", "b").value_or(false));
  EXPECT_FALSE(Publish(*a, "k", "a", FleetEntry{.value = "late", .ttl_remaining = absl::Seconds(9)},
                       {.kind = Kind::kLoaded, .key = "k"})
                   .value_or(true));
  EXPECT_EQ(RawInteger({"EXISTS", MakeRedisFleetKeys("fc:", "k").entry}), 0);
  EXPECT_EQ(RawInteger({"EXISTS", MakeRedisFleetKeys("fc:", "k").lease}), 1)
      << "a stranger's Publish ended the holder's lease";

  // Nothing was announced by the failed publishes: a marker from `a` is the first b hears.
  LoadAndPublish(*a, "marker", std::nullopt, {.kind = Kind::kNotShared, .key = "marker"});
  ASSERT_TRUE(heard_by_b.WaitForAnnouncements(1)) << "the marker never arrived";
  const std::vector<FleetAnnouncement> heard = heard_by_b.announcements();
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0].key, "marker");
}

TEST_F(RedisFleetStoreTest, AnnouncementsReachTheOtherSidecarIntactAndNeverTheSender) {
  RecordingListener heard_by_a;
  RecordingListener heard_by_b;
  std::unique_ptr<RedisFleetStore> a = NewStore(&heard_by_a);
  std::unique_ptr<RedisFleetStore> b = NewStore(&heard_by_b);

  const std::vector<std::string> keys = {"{", "}", "a}b{c", std::string("n\0l", 3), Binary1KiB()};
  std::vector<FleetAnnouncement> sent;
  for (const std::string& key : keys) {
    // kLoaded last: once the key's entry is stored, no lease is taken for it.
    sent.push_back({.kind = Kind::kNotShared, .key = key});
    LoadAndPublish(*a, key, std::nullopt, sent.back());
    sent.push_back({.kind = Kind::kFailed,
                    .key = key,
                    .failure = absl::ResourceExhaustedError(std::string("quota \0 {}", 10))});
    LoadAndPublish(*a, key, std::nullopt, sent.back());
    sent.push_back({.kind = Kind::kLoaded, .key = key});
    LoadAndPublish(*a, key, FleetEntry{.value = "v", .ttl_remaining = absl::Seconds(5)},
                   sent.back());
  }
  // Then one from b: a hears it, and by then it has seen (and dropped) every one of its own.
  LoadAndPublish(*b, "from-b", std::nullopt,
                 {.kind = Kind::kFailed, .key = "from-b", .failure = absl::NotFoundError("nf")});

  ASSERT_TRUE(heard_by_b.WaitForAnnouncements(sent.size())) << "announcements were lost";
  const std::vector<FleetAnnouncement> heard = heard_by_b.announcements();
  ASSERT_EQ(heard.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(heard[i].kind, sent[i].kind);
    EXPECT_EQ(heard[i].key, sent[i].key);
    EXPECT_EQ(heard[i].failure, sent[i].failure);
  }
  ASSERT_TRUE(heard_by_a.WaitForAnnouncements(1)) << "b's announcement never reached a";
  const std::vector<FleetAnnouncement> heard_a = heard_by_a.announcements();
  ASSERT_EQ(heard_a.size(), 1u) << "a heard its own announcements";
  EXPECT_EQ(heard_a[0].kind, Kind::kFailed);
  EXPECT_EQ(heard_a[0].key, "from-b");
  EXPECT_EQ(heard_a[0].failure, absl::NotFoundError("nf"));

  EXPECT_EQ(b->stats().announcements_received, sent.size());
  EXPECT_EQ(a->stats().announcements_received, 1u);
  EXPECT_EQ(a->stats().announcements_published, sent.size());
  EXPECT_EQ(heard_by_a.resubscribed() + heard_by_b.resubscribed(), 0);
}

TEST_F(RedisFleetStoreTest, MalformedAnnouncementsAreCountedAndDropped) {
  RecordingListener heard;
  std::unique_ptr<RedisFleetStore> store = NewStore(&heard);
  ASSERT_TRUE(Raw({"PUBLISH", "fc:announce", "garbage"}).ok());
  ASSERT_TRUE(Raw({"PUBLISH", "fc:announce", ""}).ok());
  // Another sidecar's well-formed announcement, after them, still arrives.
  ASSERT_TRUE(Raw({"PUBLISH", "fc:announce",
                   EncodeAnnouncement("other", {.kind = Kind::kInvalidated, .key = "k"})})
                  .ok());
  ASSERT_TRUE(heard.WaitForAnnouncements(1)) << "the good announcement never arrived";
  EXPECT_EQ(heard.announcements().size(), 1u);
  EXPECT_EQ(heard.announcements()[0].key, "k");
  EXPECT_EQ(store->stats().announcements_malformed, 2u);
  EXPECT_EQ(store->stats().announcements_received, 1u);
}

TEST_F(RedisFleetStoreTest, InvalidateDeletesEntryAndLeaseAndAnnounces) {
  RecordingListener heard_by_a;
  std::unique_ptr<RedisFleetStore> a = NewStore(&heard_by_a);
  std::unique_ptr<RedisFleetStore> b = NewStore();
  LoadAndPublish(*a, "stored", FleetEntry{.value = "v", .ttl_remaining = absl::Seconds(30)},
                 {.kind = Kind::kLoaded, .key = "stored"});
  ASSERT_TRUE(TakeLease(*a, "loading", "a").value_or(false));
  const std::string odd("}\0{", 3);
  ASSERT_TRUE(TakeLease(*a, odd, "a").value_or(false));

  ASSERT_TRUE(Invalidate(*b, {"stored", "loading", odd, "never-there"}).ok());
  for (const std::string& key : {std::string("stored"), std::string("loading"), odd}) {
    const RedisFleetKeys names = MakeRedisFleetKeys("fc:", key);
    EXPECT_EQ(RawInteger({"EXISTS", names.entry, names.lease}), 0) << ::testing::PrintToString(key);
  }
  absl::StatusOr<std::optional<FleetEntry>> entry = Read(*a, "stored");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_FALSE(entry->has_value());

  ASSERT_TRUE(heard_by_a.WaitForAnnouncements(4)) << "invalidations were not announced";
  std::vector<std::string> keys;
  for (const FleetAnnouncement& heard : heard_by_a.announcements()) {
    EXPECT_EQ(heard.kind, Kind::kInvalidated);
    keys.push_back(heard.key);
  }
  EXPECT_THAT(keys, ElementsAre("stored", "loading", odd, "never-there"));
  EXPECT_EQ(b->stats().invalidations_sent, 4u);

  EXPECT_TRUE(Invalidate(*b, {}).ok());
}

TEST_F(RedisFleetStoreTest, SetListenerNullWaitsForTheRunningCallAndStopsLaterOnes) {
  // A listener that holds its first call until released.
  class BlockingListener : public FleetListener {
   public:
    void OnAnnouncement(const FleetAnnouncement&) override {
      absl::MutexLock lock(&mu_);
      ++calls_;
      mu_.Await(absl::Condition(&released_));
    }
    void OnResubscribed() override {}
    [[nodiscard]] bool WaitForCalls(int n) {
      absl::MutexLock lock(&mu_);
      auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return calls_ >= n; };
      return mu_.AwaitWithTimeout(absl::Condition(&reached), kTestWait);
    }
    void Release() {
      absl::MutexLock lock(&mu_);
      released_ = true;
    }
    int calls() {
      absl::MutexLock lock(&mu_);
      return calls_;
    }

   private:
    absl::Mutex mu_;
    int calls_ ABSL_GUARDED_BY(mu_) = 0;
    bool released_ ABSL_GUARDED_BY(mu_) = false;
  };

  BlockingListener listener;
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore(&listener);
  ASSERT_TRUE(Invalidate(*a, {"one", "two"}).ok());
  ASSERT_TRUE(listener.WaitForCalls(1)) << "the announcement never arrived";

  absl::Mutex mu;
  bool returned = false;
  std::thread unset([&] {
    b->SetListener(nullptr);
    absl::MutexLock lock(&mu);
    returned = true;
  });
  {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(mu.AwaitWithTimeout(absl::Condition(&returned), absl::Milliseconds(100)))
        << "SetListener(nullptr) returned while a listener call was running";
  }
  listener.Release();
  unset.join();
  EXPECT_TRUE(returned);
  // "two" was queued behind the blocked call: dropped, like everything after.
  ASSERT_TRUE(Invalidate(*a, {"three"}).ok());
  ASSERT_TRUE(Eventually([&] { return b->stats().announcements_received == 3; }));
  absl::SleepFor(absl::Milliseconds(50));  // room for a wrongly delivered call to show
  EXPECT_EQ(listener.calls(), 1);
}

TEST_F(RedisFleetStoreTest, AListenerMayUnsetItselfFromInsideItsCall) {
  // Unsets the store's listener from its first call: that must return (not wait for itself),
  // and no call follows.
  class SelfRemovingListener : public RecordingListener {
   public:
    void OnAnnouncement(const FleetAnnouncement& announcement) override {
      RecordingListener::OnAnnouncement(announcement);
      store->SetListener(nullptr);
      unset.CountDown();
    }
    FleetStore* store = nullptr;
    testing::Latch unset{1};
  };
  SelfRemovingListener listener;
  std::unique_ptr<RedisFleetStore> a = NewStore();
  std::unique_ptr<RedisFleetStore> b = NewStore();
  listener.store = b.get();
  b->SetListener(&listener);
  ASSERT_TRUE(Invalidate(*a, {"one", "two", "three"}).ok());
  ASSERT_TRUE(listener.WaitForAnnouncements(1)) << "the announcement never arrived";
  ASSERT_TRUE(listener.unset.WaitFor()) << "SetListener(nullptr) from a listener call waited for "
                                           "itself";
  ASSERT_TRUE(Eventually([&] { return b->stats().announcements_received == 3; }));
  absl::SleepFor(absl::Milliseconds(50));  // room for a wrongly delivered call to show
  EXPECT_EQ(listener.announcements().size(), 1u);
}

TEST_F(RedisFleetStoreTest, KilledRedisFailsEveryOperationFastThenRestartedItWorksAndResubscribes) {
  RecordingListener heard;
  RedisOptions options = Options();
  options.command_timeout = absl::Milliseconds(20);
  std::unique_ptr<RedisFleetStore> store = NewStore(options, &heard);
  std::unique_ptr<RedisFleetStore> other = NewStore();

  redis_.Kill();
  ASSERT_TRUE(Eventually([&] { return !store->CanWait(); }))
      << "the lost subscription went unnoticed";
  auto read = NewOutcome<std::optional<FleetEntry>>(loop_);
  store->Read("k", read->Callback());
  auto take = NewOutcome<bool>(loop_);
  store->TakeLease("k", "t", absl::Seconds(1), take->Callback());
  auto renew = NewOutcome<bool>(loop_);
  store->RenewLease("k", "t", absl::Seconds(1), renew->Callback());
  auto publish = NewOutcome<bool>(loop_);
  store->Publish("k", "t", FleetEntry{.value = "v"}, {.key = "k"}, publish->Callback());
  EXPECT_FALSE(read->Await().ok());
  EXPECT_FALSE(take->Await().ok());
  EXPECT_FALSE(renew->Await().ok());
  EXPECT_FALSE(publish->Await().ok());
  EXPECT_FALSE(Invalidate(*store, {"k"}).ok());
  for (absl::Duration elapsed :
       {read->elapsed(), take->elapsed(), renew->elapsed(), publish->elapsed()}) {
    EXPECT_LE(elapsed, options.command_timeout + kMargin);
  }
  EXPECT_GT(store->stats().call_errors, 0u);
  EXPECT_EQ(store->stats().commands_state, RedisState::kDegraded);

  ASSERT_TRUE(redis_.Start()) << redis_.Log();
  ASSERT_TRUE(heard.WaitForResubscribed(1)) << "OnResubscribed never came";
  // The subscriber tells of the re-subscription before it says connected: bounded wait.
  EXPECT_TRUE(Eventually([&] { return store->CanWait(); })) << "never subscribed again";
  ASSERT_TRUE(Eventually([&] { return Read(*store, "k").ok(); })) << "never worked again";
  EXPECT_GE(store->stats().resubscriptions, 1u);
  // And announcements flow again.
  ASSERT_TRUE(Eventually([&] {
    return other->CanWait() && other->stats().commands_state == RedisState::kConnected;
  })) << "the other store never connected again";
  LoadAndPublish(*other, "after", std::nullopt, {.kind = Kind::kNotShared, .key = "after"});
  ASSERT_TRUE(heard.WaitForAnnouncements(1)) << "no announcement after the restart";
  EXPECT_EQ(heard.announcements().back().key, "after");
}

TEST_F(RedisFleetStoreTest, StoppedRedisFailsEveryOperationWithinTheTimeout) {
  RedisOptions options = Options();
  options.command_timeout = absl::Milliseconds(20);
  options.stall_timeout = kTestWait;  // the timeout alone ends each call
  std::unique_ptr<RedisFleetStore> store = NewStore(options);

  redis_.Pause();
  auto read = NewOutcome<std::optional<FleetEntry>>(loop_);
  store->Read("k", read->Callback());
  auto take = NewOutcome<bool>(loop_);
  store->TakeLease("k", "t", absl::Seconds(1), take->Callback());
  auto renew = NewOutcome<bool>(loop_);
  store->RenewLease("k", "t", absl::Seconds(1), renew->Callback());
  auto publish = NewOutcome<bool>(loop_);
  store->Publish("k", "t", std::nullopt, {.kind = Kind::kNotShared, .key = "k"},
                 publish->Callback());
  EXPECT_EQ(read->Await().status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(take->Await().status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(renew->Await().status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(publish->Await().status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Invalidate(*store, {"k"}).code(), absl::StatusCode::kDeadlineExceeded);
  for (absl::Duration elapsed :
       {read->elapsed(), take->elapsed(), renew->elapsed(), publish->elapsed()}) {
    EXPECT_GE(elapsed, options.command_timeout);
    EXPECT_LE(elapsed, options.command_timeout + kMargin);
  }
  EXPECT_GE(store->stats().call_timeouts, 5u);
  redis_.Resume();
}

TEST_F(RedisFleetStoreTest, DestroyingTheStoreCancelsWhatIsOutstanding) {
  RedisOptions options = Options();
  options.command_timeout = kTestWait;
  options.stall_timeout = kTestWait;
  std::unique_ptr<RedisFleetStore> store = NewStore(options);
  redis_.Pause();
  auto read = NewOutcome<std::optional<FleetEntry>>(loop_);
  store->Read("k", read->Callback());
  store.reset();
  EXPECT_EQ(read->Await().status().code(), absl::StatusCode::kCancelled);
  redis_.Resume();
}

TEST_F(RedisFleetStoreTest, StatsCountCallsAndState) {
  std::unique_ptr<RedisFleetStore> store = NewStore();
  const RedisFleetStoreStats before = store->stats();
  EXPECT_EQ(before.commands_state, RedisState::kConnected);
  EXPECT_EQ(before.subscriber_state, RedisState::kConnected);
  ASSERT_TRUE(Read(*store, "k").ok());
  ASSERT_TRUE(Raw({"SET", MakeRedisFleetKeys("fc:", "k").lease, "x", "PX", "10000"}).ok());
  ASSERT_TRUE(Raw({"SET", MakeRedisFleetKeys("fc:", "bad").entry, "Q"}).ok());
  EXPECT_FALSE(Read(*store, "bad").ok());  // a reply, so not a call error
  const RedisFleetStoreStats after = store->stats();
  EXPECT_EQ(after.calls, before.calls + 2);
  EXPECT_EQ(after.call_errors, before.call_errors);
  EXPECT_GT(after.call_latency_total, before.call_latency_total);
  EXPECT_GT(after.call_latency_max, absl::ZeroDuration());
}

TEST_F(RedisFleetStoreTest, KeyPrefixesSeparateFleets) {
  auto other_fleet = std::make_unique<RedisFleetStore>(loop_, Options(), workers_,
                                                       RedisFleetStoreOptions{.key_prefix = "x:"});
  RecordingListener heard_by_other_fleet;
  other_fleet->SetListener(&heard_by_other_fleet);
  ASSERT_TRUE(Eventually([&] { return other_fleet->CanWait(); }));
  std::unique_ptr<RedisFleetStore> store = NewStore();
  LoadAndPublish(*store, "k", FleetEntry{.value = "v", .ttl_remaining = absl::Seconds(5)},
                 {.kind = Kind::kLoaded, .key = "k"});
  absl::StatusOr<std::optional<FleetEntry>> entry = Read(*other_fleet, "k");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_FALSE(entry->has_value());
  EXPECT_TRUE(TakeLease(*other_fleet, "k", "o").value_or(false));
  EXPECT_FALSE(heard_by_other_fleet.WaitForAnnouncements(1, absl::Milliseconds(100)));
  other_fleet->SetListener(nullptr);
}

}  // namespace
}  // namespace flightcache
