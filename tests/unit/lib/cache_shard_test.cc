#include "internal/cache_shard.h"

#include <cstdint>
#include <list>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

using ::flightcache::testing::FakeClock;

constexpr int64_t kOverhead = kCacheEntryOverheadBytes;

// A shard plus a fake clock, with helpers that hash the key and read the time.
struct Harness {
  explicit Harness(int64_t capacity) : shard(capacity) {}

  void Put(std::string_view key, std::optional<std::string> value,
           absl::Duration ttl = absl::Minutes(1)) {
    shard.Insert(key, CacheShard::Hash(key), value ? MakeValue(*std::move(value)) : nullptr,
                 clock.Now() + ttl, clock.Now());
  }
  std::optional<CacheHit> Get(std::string_view key) {
    return shard.Lookup(key, CacheShard::Hash(key), clock.Now());
  }
  std::optional<CacheHit> Peek(std::string_view key) {
    return shard.Peek(key, CacheShard::Hash(key), clock.Now());
  }
  bool Erase(std::string_view key) { return shard.Erase(key, CacheShard::Hash(key), clock.Now()); }
  bool Has(std::string_view key) { return Peek(key).has_value(); }

  FakeClock clock;
  CacheShard shard;
};

// A value is kept stale for the keep window past its TTL: fresh lookups miss it, stale-allowing
// ones find it (with how long past its TTL it is) until the window ends. Not-found entries are
// never kept: a stale "not found" has nothing worth serving.
TEST(CacheShardTest, ValuesAreKeptStaleForTheKeepWindowAndNegativeEntriesAreNot) {
  Harness h(1 << 20);
  h.shard.SetKeepExpiredFor(absl::Seconds(10));
  h.Put("a", "alpha", absl::Seconds(1));
  h.Put("n", std::nullopt, absl::Seconds(1));
  const int64_t bytes = h.shard.bytes();
  h.clock.Advance(absl::Seconds(3));

  EXPECT_FALSE(h.Get("a").has_value());
  auto stale = h.shard.LookupAllowingStale("a", CacheShard::Hash("a"), h.clock.Now());
  ASSERT_TRUE(stale.has_value());
  EXPECT_TRUE(stale->stale());
  EXPECT_EQ(stale->stale_for(), absl::Seconds(2));
  EXPECT_EQ(*stale->value, "alpha");
  EXPECT_FALSE(h.shard.LookupAllowingStale("n", CacheShard::Hash("n"), h.clock.Now()).has_value());
  EXPECT_EQ(h.shard.entries(), 1) << "the expired negative entry was dropped, the value kept";
  EXPECT_LT(h.shard.bytes(), bytes);

  h.clock.Advance(absl::Seconds(8));  // 11 s past its TTL: dead
  EXPECT_FALSE(h.shard.LookupAllowingStale("a", CacheShard::Hash("a"), h.clock.Now()).has_value());
  EXPECT_EQ(h.shard.entries(), 0);
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

TEST(CacheShardTest, AReadPastTheRefreshPointReportsTheEntryDue) {
  Harness h(1 << 20);
  const absl::Time now = h.clock.Now();
  h.shard.Insert("a", CacheShard::Hash("a"), MakeValue("alpha"), now + absl::Seconds(10), now,
                 nullptr, now + absl::Seconds(8));
  h.clock.Advance(absl::Seconds(7));
  EXPECT_FALSE(h.Get("a")->refresh_due);
  h.clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(h.Get("a")->refresh_due);
  bool due = false;
  EXPECT_TRUE(h.shard.SharedRead("a", CacheShard::Hash("a"), h.clock.Now(), nullptr,
                                 [&](const CacheEntryView& e) { due = e.refresh_due; }));
  EXPECT_TRUE(due);
  h.Put("b", "beta");  // no refresh point
  h.clock.Advance(absl::Seconds(59));
  EXPECT_FALSE(h.Get("b")->refresh_due);
}

// A stale entry is erased and replaced like a live one (Invalidate counts it; a refresh replaces
// it).
TEST(CacheShardTest, AStaleEntryIsErasedAndReplacedLikeALiveOne) {
  Harness h(1 << 20);
  h.shard.SetKeepExpiredFor(absl::Seconds(10));
  h.Put("a", "alpha", absl::Seconds(1));
  h.clock.Advance(absl::Seconds(2));
  EXPECT_TRUE(h.shard.Erase("a", CacheShard::Hash("a"), h.clock.Now()))
      << "a stale entry counts as removed";
  h.Put("a", "alpha", absl::Seconds(1));
  h.clock.Advance(absl::Seconds(2));
  h.Put("a", "alpha2", absl::Seconds(60));
  EXPECT_EQ(*h.Get("a")->value, "alpha2");
  EXPECT_EQ(h.shard.entries(), 1);
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

TEST(CacheShardTest, HitMissAndNegativeEntries) {
  Harness h(1 << 20);
  h.Put("a", "alpha");
  h.Put("n", std::nullopt);

  const std::optional<CacheHit> hit = h.Get("a");
  ASSERT_TRUE(hit.has_value());
  EXPECT_FALSE(hit->negative());
  EXPECT_EQ(*hit->value, "alpha");
  EXPECT_EQ(hit->expires_at, h.clock.Now() + absl::Minutes(1));

  const std::optional<CacheHit> negative = h.Get("n");
  ASSERT_TRUE(negative.has_value());
  EXPECT_TRUE(negative->negative());

  EXPECT_FALSE(h.Get("missing").has_value());
  EXPECT_EQ(h.shard.entries(), 2);
  EXPECT_EQ(h.shard.bytes(), (1 + 5 + kOverhead) + (1 + kOverhead));
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

TEST(CacheShardTest, HitSharesTheStoredValue) {
  Harness h(1 << 20);
  const Value value = MakeValue("shared");
  h.shard.Insert("k", CacheShard::Hash("k"), value, h.clock.Now() + absl::Minutes(1),
                 h.clock.Now());
  EXPECT_TRUE(h.Get("k")->value.SharesBytesWith(value));
}

TEST(CacheShardTest, KeysOfAnyLengthRoundTrip) {
  Harness h(1 << 20);
  // Around the 16-byte inline limit, empty, and far beyond it (stored out of line).
  const std::string keys[] = {"",
                              "k",
                              std::string(15, 'a'),
                              std::string(16, 'b'),
                              std::string(17, 'c'),
                              std::string(4096, 'd')};
  for (const std::string& key : keys) h.Put(key, absl::StrCat("v", key.size()));
  for (const std::string& key : keys) {
    const std::optional<CacheHit> hit = h.Get(key);
    ASSERT_TRUE(hit.has_value()) << key.size();
    EXPECT_EQ(*hit->value, absl::StrCat("v", key.size()));
  }
  EXPECT_FALSE(h.Get(std::string(16, 'c')).has_value());  // same length, other bytes
  EXPECT_TRUE(h.Erase(std::string(4096, 'd')));
  EXPECT_TRUE(h.Erase(std::string(17, 'c')));
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
  EXPECT_EQ(h.shard.entries(), 4);
}

TEST(CacheShardTest, ExpiredEntryIsAMissAndIsDroppedLazily) {
  Harness h(1 << 20);
  h.Put("k", "v", absl::Seconds(10));
  h.clock.Advance(absl::Seconds(10) - absl::Nanoseconds(1));
  EXPECT_TRUE(h.Get("k").has_value());
  EXPECT_EQ(h.shard.entries(), 1);

  h.clock.Advance(absl::Nanoseconds(1));  // now == expires_at: expired
  EXPECT_EQ(h.shard.entries(), 1);        // still stored until touched
  EXPECT_FALSE(h.Get("k").has_value());
  EXPECT_EQ(h.shard.entries(), 0);
  EXPECT_EQ(h.shard.bytes(), 0);
  EXPECT_EQ(h.shard.expirations(), 1);
  EXPECT_EQ(h.shard.evictions(), 0);
}

TEST(CacheShardTest, PeekDoesNotReturnExpiredEntries) {
  Harness h(1 << 20);
  h.Put("k", std::nullopt, absl::Seconds(1));
  EXPECT_TRUE(h.Peek("k").has_value());
  h.clock.Advance(absl::Seconds(2));
  EXPECT_FALSE(h.Peek("k").has_value());
  EXPECT_EQ(h.shard.entries(), 0);
}

TEST(CacheShardTest, InfiniteTtlNeverExpires) {
  Harness h(1 << 20);
  h.Put("k", "v", absl::InfiniteDuration());
  h.clock.Advance(absl::Hours(24 * 365 * 100));
  const std::optional<CacheHit> hit = h.Get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->expires_at, absl::InfiniteFuture());
}

TEST(CacheShardTest, InsertThatIsAlreadyExpiredStoresNothingAndDropsTheOldEntry) {
  Harness h(1 << 20);
  h.Put("k", "old");
  h.Put("k", "new", absl::ZeroDuration());
  EXPECT_FALSE(h.Get("k").has_value());
  EXPECT_EQ(h.shard.entries(), 0);
  EXPECT_EQ(h.shard.bytes(), 0);
}

TEST(CacheShardTest, ReplaceUpdatesValueAndBytes) {
  Harness h(1 << 20);
  h.Put("k", std::string(10, 'x'));
  EXPECT_EQ(h.shard.bytes(), 1 + 10 + kOverhead);
  h.Put("k", std::string(50, 'y'), absl::Seconds(5));
  EXPECT_EQ(h.shard.bytes(), 1 + 50 + kOverhead);
  EXPECT_EQ(h.shard.entries(), 1);
  std::optional<CacheHit> hit = h.Get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit->value, std::string(50, 'y'));
  EXPECT_EQ(hit->expires_at, h.clock.Now() + absl::Seconds(5));

  h.Put("k", std::nullopt);
  EXPECT_EQ(h.shard.bytes(), 1 + kOverhead);
  hit = h.Get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(hit->negative());
  EXPECT_EQ(h.shard.evictions(), 0);
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

TEST(CacheShardTest, EraseRemovesOnlyLiveEntries) {
  Harness h(1 << 20);
  h.Put("a", "1");
  h.Put("b", "2", absl::Seconds(1));
  EXPECT_TRUE(h.Erase("a"));
  EXPECT_FALSE(h.Erase("a"));
  EXPECT_FALSE(h.Get("a").has_value());
  EXPECT_FALSE(h.Erase("never"));

  h.clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(h.Erase("b"));  // expired: not live, but dropped
  EXPECT_EQ(h.shard.entries(), 0);
  EXPECT_EQ(h.shard.bytes(), 0);
  EXPECT_EQ(h.shard.evictions(), 0);
  EXPECT_EQ(h.shard.expirations(), 1);
}

TEST(CacheShardTest, OversizedEntryIsNotStored) {
  Harness h(1000);
  h.Put("big", std::string(1000, 'x'));  // charge 3 + 1000 + 96 > 1000
  EXPECT_FALSE(h.Get("big").has_value());
  EXPECT_EQ(h.shard.entries(), 0);
  EXPECT_EQ(h.shard.bytes(), 0);

  h.Put("fit", std::string(1000 - 3 - kOverhead, 'x'));  // exactly the capacity
  EXPECT_TRUE(h.Get("fit").has_value());
  EXPECT_EQ(h.shard.bytes(), 1000);

  // An oversized replacement must not leave the stale value behind.
  h.Put("fit", std::string(2000, 'y'));
  EXPECT_FALSE(h.Get("fit").has_value());
  EXPECT_EQ(h.shard.bytes(), 0);
  EXPECT_EQ(h.shard.evictions(), 0);
}

TEST(CacheShardTest, ZeroCapacityStoresNothing) {
  Harness h(0);
  h.Put("k", std::nullopt);
  EXPECT_FALSE(h.Get("k").has_value());
  EXPECT_EQ(h.shard.bytes(), 0);
}

TEST(CacheShardTest, SetCapacityEvictsDownToTheNewBound) {
  Harness h(10000);
  for (int i = 0; i < 20; ++i) h.Put(absl::StrCat("k", i), std::string(100, 'v'));
  h.shard.SetCapacity(1000, h.clock.Now());
  EXPECT_LE(h.shard.bytes(), 1000);
  EXPECT_GT(h.shard.bytes(), 1000 - (3 + 100 + kOverhead));
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

// Capacity for exactly three entries of `charge` bytes each: keys "a".."z", 9-byte values.
constexpr int64_t kSmallCharge = 1 + 9 + kOverhead;

TEST(CacheShardTest, EvictsAnUnreadNewEntryBeforeOneThatWasRead) {
  Harness h(3 * kSmallCharge);
  h.Put("a", "123456789");
  h.Put("b", "123456789");
  h.Put("c", "123456789");
  ASSERT_TRUE(h.Get("a").has_value());  // a is read again: promoted rather than evicted
  h.Put("d", "123456789");

  EXPECT_EQ(h.shard.evictions(), 1);
  EXPECT_TRUE(h.Has("a"));
  EXPECT_FALSE(h.Has("b"));  // the oldest entry nobody read
  EXPECT_TRUE(h.Has("c"));
  EXPECT_TRUE(h.Has("d"));
  EXPECT_EQ(h.shard.bytes(), 3 * kSmallCharge);
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

TEST(CacheShardTest, KeyThatComesBackSoonAfterEvictionIsKept) {
  Harness h(3 * kSmallCharge);
  h.Put("a", "123456789");
  h.Put("b", "123456789");
  h.Put("c", "123456789");
  h.Put("d", "123456789");  // evicts a (unread) into the ghost
  ASSERT_FALSE(h.Has("a"));
  h.Put("a", "123456789");  // remembered by the ghost: admitted to the main queue

  // A run of new keys now churns only the small queue; a stays although it is never read.
  for (char c = 'e'; c <= 'z'; ++c) h.Put(std::string(1, c), "123456789");
  EXPECT_TRUE(h.Has("a"));
  EXPECT_TRUE(h.Has("z"));
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

TEST(CacheShardTest, ExpiredEntriesAreRemovedBeforeLiveOnesAndAreNotEvictions) {
  Harness h(3 * kSmallCharge);
  h.Put("a", "123456789", absl::Seconds(1));
  h.Put("b", "123456789");
  h.Put("c", "123456789");
  for (const char* key : {"a", "b", "c"}) ASSERT_TRUE(h.Get(key).has_value());
  h.clock.Advance(absl::Seconds(2));
  h.Put("d", "123456789");

  EXPECT_EQ(h.shard.evictions(), 0);
  EXPECT_EQ(h.shard.expirations(), 1);
  EXPECT_TRUE(h.Has("b"));
  EXPECT_TRUE(h.Has("c"));
  EXPECT_TRUE(h.Has("d"));
}

TEST(CacheShardTest, ReplacingAHotEntryKeepsItHot) {
  Harness h(3 * kSmallCharge);
  h.Put("a", "123456789");
  h.Put("b", "123456789");
  h.Put("c", "123456789");
  ASSERT_TRUE(h.Get("a").has_value());
  h.Put("d", "123456789");  // a moves to the main queue
  h.Put("a", "987654321");  // refresh
  for (char c = 'e'; c <= 'z'; ++c) h.Put(std::string(1, c), "123456789");
  const std::optional<CacheHit> hit = h.Get("a");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit->value, "987654321");
}

// Random inserts (random sizes, negative entries, TTLs), lookups, peeks, erases and clock
// steps. After every operation the byte bound holds; every hit returns exactly the value last
// inserted for that key and not yet expired or erased; periodically every structure is checked;
// at the end the live entries found by key sum to bytes() and entries().
TEST(CacheShardTest, ByteBoundAndContentsHoldUnderRandomLoad) {
  constexpr int64_t kCapacity = 50'000;
  constexpr int kKeys = 300;
  constexpr int kOps = 40'000;
  Harness h(kCapacity);
  std::mt19937 rng(20240601);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) {
    // Every third key is longer than the 16-byte inline limit.
    keys.push_back(i % 3 == 0 ? absl::StrFormat("long-key-%030d", i) : absl::StrCat("k", i));
  }
  struct Expected {
    Value value;  // null: negative
    absl::Time expires_at;
  };
  absl::flat_hash_map<std::string, Expected> model;  // what a hit must return, if anything

  int hits = 0;
  for (int op = 0; op < kOps; ++op) {
    const std::string& key = keys[uniform(0, kKeys - 1)];
    const int dice = uniform(0, 99);
    if (dice < 45) {
      Value value =
          uniform(0, 9) == 0 ? nullptr : MakeValue(std::string(uniform(0, 1000), 'a' + op % 26));
      const absl::Duration ttl = absl::Milliseconds(uniform(1, 20'000));
      model[key] = Expected{value, h.clock.Now() + ttl};
      h.shard.Insert(key, CacheShard::Hash(key), value, h.clock.Now() + ttl, h.clock.Now());
    } else if (dice < 90) {
      const std::optional<CacheHit> hit = dice < 80 ? h.Get(key) : h.Peek(key);
      if (hit.has_value()) {
        ++hits;
        const auto it = model.find(key);
        ASSERT_NE(it, model.end()) << "hit on a key never inserted or erased: " << key;
        ASSERT_TRUE(hit->value.SharesBytesWith(it->second.value))
            << key;  // same block, or both null
        ASSERT_EQ(hit->expires_at, it->second.expires_at);
        ASSERT_LT(h.clock.Now(), hit->expires_at);
      }
    } else {
      const bool erased = h.Erase(key);
      const auto it = model.find(key);
      if (erased) {
        ASSERT_NE(it, model.end());
        ASSERT_LT(h.clock.Now(), it->second.expires_at);
      }
      if (it != model.end()) model.erase(it);
    }
    if (uniform(0, 3) == 0) h.clock.Advance(absl::Milliseconds(uniform(0, 200)));

    ASSERT_LE(h.shard.bytes(), kCapacity) << "after op " << op;
    ASSERT_GE(h.shard.bytes(), 0);
    if (op % 500 == 0) {
      const absl::Status status = h.shard.CheckInvariants();
      ASSERT_TRUE(status.ok()) << "after op " << op << ": " << status;
    }
  }
  EXPECT_GT(h.shard.evictions(), 1000);  // the bound was really under pressure
  EXPECT_GT(h.shard.expirations(), 100);
  EXPECT_GT(hits, 1000);

  // Cross-check against the entries found by key (Peek drops expired ones first).
  int64_t live_bytes = 0;
  int64_t live_entries = 0;
  for (const std::string& key : keys) {
    if (const std::optional<CacheHit> hit = h.Peek(key)) {
      live_bytes += CacheShard::Charge(key, hit->value);
      ++live_entries;
    }
  }
  EXPECT_EQ(live_bytes, h.shard.bytes());
  EXPECT_EQ(live_entries, h.shard.entries());
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

// A byte-bounded FIFO (refresh_on_hit = false) or LRU (true) over the same charges, to show the
// scan below defeats them.
class ReferenceCache {
 public:
  ReferenceCache(int64_t capacity, bool refresh_on_hit)
      : capacity_(capacity), refresh_on_hit_(refresh_on_hit) {}

  bool Lookup(const std::string& key) {
    const auto it = index_.find(key);
    if (it == index_.end()) return false;
    if (refresh_on_hit_) order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void Insert(const std::string& key, int64_t charge) {
    while (bytes_ + charge > capacity_) {
      bytes_ -= order_.back().second;
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, charge);
    index_[key] = order_.begin();
    bytes_ += charge;
  }

 private:
  const int64_t capacity_;
  const bool refresh_on_hit_;
  int64_t bytes_ = 0;
  std::list<std::pair<std::string, int64_t>> order_;  // newest first
  absl::flat_hash_map<std::string, std::list<std::pair<std::string, int64_t>>::iterator> index_;
};

// The hot set survives a scan of one-hit keys 50x larger than the cache.
//
// Each round reads 100 hot keys (inserting on a miss) and then 1,000 cold keys that are never
// seen again; the cache holds about 1,000 entries. Between two reads of a hot key come 1,099
// other distinct keys, more than the cache holds, so:
//   - plain FIFO: every hot key has been pushed out by the >= 1,000 inserts since its own
//     insert before it is read again: 0 hot hits (the reference simulation below measures it);
//   - LRU: the hot key has reuse distance 1,099 > 1,000 entries and is always the least recently
//     used by then: also 0 hot hits.
// S3-FIFO: a hot key is first evicted from the small queue into the ghost; when it is read again
// while the ghost still remembers it, it is admitted to the main queue, which the cold scan never
// touches because the small queue absorbs it. With a ghost of ~1,000 buckets and ~1,000 cold
// evictions in between, a key not yet admitted gets in with probability about e^-1 per round
// (from the cold start most get in on their second read: ~98% hits from round 1 on). We measure
// rounds 5..60 and require >= 90%; every run so far measured 100%.
TEST(CacheShardTest, HotSetSurvivesScanOfOneHitKeys) {
  constexpr int kHot = 100;
  constexpr int kColdPerRound = 1000;
  constexpr int kRounds = 60;
  constexpr int kWarmupRounds = 5;
  const std::string value(100, 'v');
  const int64_t cold_charge = CacheShard::Charge("cold-00000000", MakeValue(value));
  const int64_t capacity = 1000 * cold_charge;

  Harness h(capacity);
  ReferenceCache fifo(capacity, /*refresh_on_hit=*/false);
  ReferenceCache lru(capacity, /*refresh_on_hit=*/true);
  const Value shared_value = MakeValue(value);
  // Reads `key` from all three caches, inserting it on a miss; reports which ones hit.
  struct Hits {
    bool s3fifo, fifo, lru;
  };
  auto read = [&](const std::string& key) {
    Hits hits{h.Get(key).has_value(), fifo.Lookup(key), lru.Lookup(key)};
    const int64_t charge = CacheShard::Charge(key, shared_value);
    if (!hits.s3fifo) {
      h.shard.Insert(key, CacheShard::Hash(key), shared_value, h.clock.Now() + absl::Hours(1),
                     h.clock.Now());
    }
    if (!hits.fifo) fifo.Insert(key, charge);
    if (!hits.lru) lru.Insert(key, charge);
    return hits;
  };

  int hot_reads = 0, hot_hits = 0, fifo_hot_hits = 0, lru_hot_hits = 0;
  int cold = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kHot; ++i) {
      const Hits hits = read(absl::StrFormat("hot-%08d", i));
      if (round >= kWarmupRounds) {
        ++hot_reads;
        hot_hits += hits.s3fifo;
        fifo_hot_hits += hits.fifo;
        lru_hot_hits += hits.lru;
      }
    }
    for (int i = 0; i < kColdPerRound; ++i) read(absl::StrFormat("cold-%08d", cold++));
    ASSERT_LE(h.shard.bytes(), capacity);
  }

  const double hit_ratio = static_cast<double>(hot_hits) / hot_reads;
  EXPECT_GE(hit_ratio, 0.90) << hot_hits << "/" << hot_reads;
  EXPECT_EQ(fifo_hot_hits, 0) << "the scan should defeat FIFO";
  EXPECT_EQ(lru_hot_hits, 0) << "the scan should defeat LRU";
  EXPECT_GE(cold, 50 * 1000);
  EXPECT_GE(h.shard.evictions(), cold - 1000);
  EXPECT_TRUE(h.shard.CheckInvariants().ok()) << h.shard.CheckInvariants();
}

}  // namespace
}  // namespace flightcache
