#include "flightcache/sharded_cache.h"

#include <atomic>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "internal/cache_shard.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

using ::flightcache::testing::FakeClock;

constexpr int64_t kOverhead = kCacheEntryOverheadBytes;

TEST(CacheOptionsTest, ValidateAcceptsSaneOptions) {
  EXPECT_TRUE(CacheOptions{}.Validate().ok());
  EXPECT_TRUE((CacheOptions{.capacity_bytes = 1, .shard_count = 1}).Validate().ok());
  EXPECT_TRUE((CacheOptions{.capacity_bytes = 1 << 20, .shard_count = 1024}).Validate().ok());
  EXPECT_TRUE((CacheOptions{.capacity_bytes = 1 << 20, .shard_count = 5}).Validate().ok());
}

TEST(CacheOptionsTest, ValidateRejectsBadOptions) {
  EXPECT_EQ((CacheOptions{.capacity_bytes = 0}).Validate().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((CacheOptions{.capacity_bytes = -1}).Validate().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((CacheOptions{.shard_count = 0}).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((CacheOptions{.shard_count = 1025}).Validate().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShardedCacheTest, LookupReturnsValuesNegativesAndMisses) {
  FakeClock clock;
  ShardedCache cache(CacheOptions{}, clock);
  cache.Insert("k", MakeValue("v"), absl::Seconds(30));
  cache.Insert("gone", nullptr, absl::Seconds(5));

  std::optional<CacheHit> hit = cache.Lookup("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit->value, "v");
  EXPECT_EQ(hit->expires_at, clock.Now() + absl::Seconds(30));
  hit = cache.Lookup("gone");
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(hit->negative());
  EXPECT_FALSE(cache.Lookup("other").has_value());

  clock.Advance(absl::Seconds(5));
  EXPECT_FALSE(cache.Lookup("gone").has_value());
  EXPECT_TRUE(cache.Lookup("k").has_value());
  clock.Advance(absl::Seconds(25));
  EXPECT_FALSE(cache.Lookup("k").has_value());
  EXPECT_EQ(cache.stats().entries, 0);
  EXPECT_EQ(cache.stats().evictions, 0);
}

TEST(ShardedCacheTest, ReadShowsLiveEntriesAndCountsLikeLookup) {
  FakeClock clock;
  ShardedCache cache(CacheOptions{}, clock);
  cache.Insert("k", MakeValue("v"), absl::Seconds(30));
  cache.Insert("gone", nullptr, absl::Seconds(5));

  std::string copied;
  absl::Duration ttl;
  EXPECT_TRUE(cache.Read("k", [&](const CacheEntryView& entry) {
    ASSERT_FALSE(entry.negative);
    copied = entry.value;
    ttl = entry.ttl_remaining;
  }));
  EXPECT_EQ(copied, "v");
  EXPECT_EQ(ttl, absl::Seconds(30));
  bool negative = false;
  EXPECT_TRUE(cache.Read("gone", [&](const CacheEntryView& entry) { negative = entry.negative; }));
  EXPECT_TRUE(negative);
  int calls = 0;
  EXPECT_FALSE(cache.Read("other", [&](const CacheEntryView&) { ++calls; }));
  clock.Advance(absl::Seconds(30));  // both expired: misses, and dropped
  EXPECT_FALSE(cache.Read("k", [&](const CacheEntryView&) { ++calls; }));
  EXPECT_FALSE(cache.Read("gone", [&](const CacheEntryView&) { ++calls; }));
  EXPECT_EQ(calls, 0);

  const CacheStats stats = cache.stats();
  EXPECT_EQ(stats.entries, 0);
}

TEST(ShardedCacheTest, LookupReportsRemainingTtl) {
  FakeClock clock;
  ShardedCache cache(CacheOptions{}, clock);
  cache.Insert("k", MakeValue("v"), absl::Seconds(30));
  clock.Advance(absl::Seconds(12));
  std::optional<CacheHit> hit = cache.Lookup("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->ttl_remaining, absl::Seconds(18));
}

TEST(ShardedCacheTest, EraseReportsWhetherALiveEntryWasThere) {
  FakeClock clock;
  ShardedCache cache(CacheOptions{}, clock);
  cache.Insert("k", MakeValue("v"), absl::Seconds(1));
  cache.Insert("j", MakeValue("v"), absl::Seconds(1));
  EXPECT_TRUE(cache.Erase("k"));
  EXPECT_FALSE(cache.Erase("k"));
  clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(cache.Erase("j"));
  EXPECT_EQ(cache.stats().entries, 0);
  EXPECT_EQ(cache.stats().bytes, 0);
}

// Every gauge and counter has an exact expected value in this one-shard scenario.
TEST(ShardedCacheTest, ClearRemovesEveryEntryAndTheCacheStaysUsable) {
  FakeClock clock;
  ShardedCache cache({.capacity_bytes = 1 << 20, .shard_count = 4}, clock);
  for (int i = 0; i < 20; ++i)
    cache.Insert(absl::StrCat("k", i), MakeValue("v"), absl::Seconds(10));
  cache.Insert("negative", nullptr, absl::Seconds(10));
  cache.Insert("long-key-longer-than-sixteen-bytes", MakeValue("v"), absl::Seconds(10));

  EXPECT_EQ(cache.Clear(), 22);
  EXPECT_EQ(cache.stats().entries, 0);
  EXPECT_EQ(cache.stats().bytes, 0);
  EXPECT_EQ(cache.stats().evictions, 0);  // cleared, not evicted
  EXPECT_FALSE(cache.Lookup("k3").has_value());
  EXPECT_FALSE(cache.Lookup("negative").has_value());

  cache.Insert("k3", MakeValue("again"), absl::Seconds(10));
  ASSERT_TRUE(cache.Lookup("k3").has_value());
  EXPECT_EQ(*cache.Lookup("k3")->value, "again");
  EXPECT_EQ(cache.Clear(), 1);
}

TEST(ShardedCacheTest, StatsAreExactInADeterministicScenario) {
  FakeClock clock;
  constexpr int64_t kCharge = 1 + 9 + kOverhead;  // one-letter key, 9-byte value
  ShardedCache cache({.capacity_bytes = 3 * kCharge, .shard_count = 1}, clock);
  cache.Insert("a", MakeValue("123456789"), absl::Minutes(1));
  cache.Insert("b", MakeValue("123456789"), absl::Minutes(1));
  cache.Insert("n", nullptr, absl::Minutes(1));

  EXPECT_TRUE(cache.Lookup("a").has_value());   // hit
  EXPECT_TRUE(cache.Lookup("n").has_value());   // negative hit
  EXPECT_FALSE(cache.Lookup("x").has_value());  // miss
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.entries, 3);
  EXPECT_EQ(stats.bytes, 2 * kCharge + (1 + kOverhead));
  EXPECT_EQ(stats.evictions, 0);

  // No room for c: b, the oldest entry not read since insertion, is evicted (a was read).
  cache.Insert("c", MakeValue("123456789"), absl::Minutes(1));
  EXPECT_FALSE(cache.Lookup("b").has_value());  // miss 2
  EXPECT_TRUE(cache.Erase("n"));                // not an eviction
  cache.Insert("d", MakeValue("123456789"), absl::Seconds(1));
  clock.Advance(absl::Seconds(2));
  EXPECT_FALSE(cache.Lookup("d").has_value());  // miss 3: expired, not an eviction

  stats = cache.stats();
  EXPECT_EQ(stats.entries, 2);  // a, c
  EXPECT_EQ(stats.bytes, 2 * kCharge);
  EXPECT_EQ(stats.evictions, 1);
  EXPECT_TRUE(cache.Lookup("a").has_value());
  EXPECT_TRUE(cache.Lookup("c").has_value());
}

TEST(ShardedCacheTest, ShardCountIsRoundedUpAndCapacitySplitEvenly) {
  FakeClock clock;
  // 3 shards round up to 4 of 500 bytes each: an entry of 501 bytes fits the total but no shard.
  ShardedCache cache({.capacity_bytes = 2000, .shard_count = 3}, clock);
  cache.Insert("k", MakeValue(std::string(500 - 1 - kOverhead + 1, 'x')), absl::Minutes(1));
  EXPECT_FALSE(cache.Lookup("k").has_value());
  EXPECT_EQ(cache.stats().bytes, 0);
  cache.Insert("k", MakeValue(std::string(500 - 1 - kOverhead, 'x')), absl::Minutes(1));
  EXPECT_TRUE(cache.Lookup("k").has_value());
  EXPECT_EQ(cache.stats().bytes, 500);
}

TEST(ShardedCacheTest, TotalBytesNeverExceedCapacity) {
  FakeClock clock;
  constexpr int64_t kCapacity = 10'007;  // not a multiple of the shard count
  ShardedCache cache({.capacity_bytes = kCapacity, .shard_count = 8}, clock);
  std::mt19937 rng(7);
  for (int i = 0; i < 5000; ++i) {
    const int size = std::uniform_int_distribution<int>(0, 600)(rng);
    cache.Insert(absl::StrCat("key", i), MakeValue(std::string(size, 'x')), absl::Minutes(1));
    ASSERT_LE(cache.stats().bytes, kCapacity) << i;
  }
  const CacheStats stats = cache.stats();
  EXPECT_GT(stats.evictions, 4000);
  EXPECT_GT(stats.bytes, kCapacity / 2);  // the shards are actually used
}

// Pitfall 15 (docs/DESIGN.md): unsynchronised concurrent access to the cache map. Four threads run
// 200,000 mixed lookups, reads, inserts (values and negatives, short real-time TTLs), erases and
// stats reads on a cache so small that nearly every insert evicts. Run under ThreadSanitizer this
// proves the shard locking; in every build it checks that a hit always carries its own key's
// value, that the byte bound holds throughout, and that the counters and totals add up.
TEST(PitfallTest, P15ConcurrentCacheAccessIsSafe) {
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 50'000;
  constexpr int kKeys = 1000;
  constexpr int64_t kCapacity = 32 * 1024;  // 8 shards of 4 KiB: ~20 entries each
  // The real clock (lock-free) rather than FakeClock: a clock mutex taken by every operation
  // would order the threads and could hide a race from TSan.
  ShardedCache cache({.capacity_bytes = kCapacity, .shard_count = 8}, MonotonicClock::Get());

  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back(absl::StrCat("key-", i));

  absl::Notification start;
  std::atomic<int64_t> wrong_values{0};  // relaxed: read after join()
  std::atomic<int64_t> over_capacity{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      auto uniform = [&rng](int lo, int hi) {
        return std::uniform_int_distribution<int>(lo, hi)(rng);
      };
      start.WaitForNotification();
      for (int op = 0; op < kOpsPerThread; ++op) {
        const std::string& key = keys[uniform(0, kKeys - 1)];
        const int dice = uniform(0, 99);
        if (dice < 40) {
          const std::optional<CacheHit> hit = cache.Lookup(key);
          if (hit && !hit->negative() && !(*hit->value).starts_with(key + "|")) {
            wrong_values.fetch_add(1, std::memory_order_relaxed);
          }
        } else if (dice < 45) {
          cache.Read(key, [&](const CacheEntryView& entry) {
            // Read under the shard's reader lock: a racing writer would show up here (and in
            // ThreadSanitizer) as a torn or foreign value.
            if (!entry.negative && !entry.value.starts_with(key + "|")) {
              wrong_values.fetch_add(1, std::memory_order_relaxed);
            }
          });
        } else if (dice < 50) {
          const std::optional<CacheHit> hit = cache.Lookup(key);
          if (hit && !hit->negative() && !(*hit->value).starts_with(key + "|")) {
            wrong_values.fetch_add(1, std::memory_order_relaxed);
          }
        } else if (dice < 85) {
          Value value = uniform(0, 9) == 0
                            ? nullptr
                            : MakeValue(absl::StrCat(key, "|", std::string(uniform(0, 300), 'v')));
          cache.Insert(key, std::move(value), absl::Milliseconds(uniform(1, 50)));
        } else if (dice < 95) {
          cache.Erase(key);
        } else {
          if (cache.stats().bytes > kCapacity) {
            over_capacity.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    });
  }
  start.Notify();
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(wrong_values.load(), 0);
  EXPECT_EQ(over_capacity.load(), 0);
  CacheStats stats = cache.stats();
  EXPECT_LE(stats.bytes, kCapacity);
  EXPECT_GT(stats.evictions, 1000);

  // Entries consistent: after Lookup has dropped whatever expired, the entries found by key are
  // exactly the cache's entries and bytes.
  int64_t found = 0;
  int64_t found_bytes = 0;
  for (const std::string& key : keys) {
    if (const std::optional<CacheHit> hit = cache.Lookup(key)) {
      ++found;
      found_bytes += CacheShard::Charge(key, hit->value);
    }
  }
  // Entries that expired after Lookup found them are still stored (dropping is lazy), so this is
  // exact.
  stats = cache.stats();
  EXPECT_EQ(stats.entries, found);
  EXPECT_EQ(stats.bytes, found_bytes);
  for (const std::string& key : keys) cache.Erase(key);
  stats = cache.stats();
  EXPECT_EQ(stats.entries, 0);
  EXPECT_EQ(stats.bytes, 0);
}

}  // namespace
}  // namespace flightcache
