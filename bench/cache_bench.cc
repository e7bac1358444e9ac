// Micro-benchmarks of ShardedCache: the hit path against a reader-writer-locked hash map
// baseline, and inserts into a full cache (every insert evicts).
//
// Run (release build): build/<dir>/bench/cache_bench --benchmark_min_time=1
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "flightcache/clock.h"
#include "flightcache/sharded_cache.h"

namespace flightcache {
namespace {

// Debian's Abseil is built without NDEBUG, so absl::Mutex runs its deadlock detector on every
// Lock() (a process-wide spinlock and a graph update): about 60 ns more per lock, and a shared
// cache line that serialises threads locking different mutexes. A release server should turn it
// off, and so does this benchmark; FLIGHTCACHE_BENCH_DEADLOCK_DETECTION=1 keeps Abseil's default
// to measure its cost.
const bool kDeadlockDetectionOff = [] {
  const char* keep = std::getenv("FLIGHTCACHE_BENCH_DEADLOCK_DETECTION");
  if (keep != nullptr && std::string_view(keep) == "1") return false;
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

constexpr size_t kAccesses = size_t{1} << 20;  // pre-generated random access sequence
constexpr int kValueBytes = 100;

// kKeys 16-byte keys, and a random sequence of indices into them, generated once so the timed
// loop does no formatting or random number generation. The hit benchmarks run with 100,000 keys
// (tables and values far larger than L2: each hit pays its cache misses) and with 1,000 keys
// (everything cache-resident: the cost of the code path itself).
struct Workload {
  std::vector<std::string> keys;
  std::vector<uint32_t> order;
};

template <int kKeys>
const Workload& GetWorkload() {
  static const Workload* const workload = [] {
    auto* w = new Workload;
    for (int i = 0; i < kKeys; ++i) w->keys.push_back(absl::StrFormat("key:%012d", i));
    std::mt19937 rng(42);
    std::uniform_int_distribution<uint32_t> pick(0, kKeys - 1);
    w->order.resize(kAccesses);
    for (uint32_t& index : w->order) index = pick(rng);
    return w;
  }();
  return *workload;
}

// Threads start at different points of the sequence so they do not touch the same keys in
// lockstep.
size_t StartFor(const benchmark::State& state) { return state.thread_index() * (kAccesses / 4); }

// Time that never moves: BM_ShardedCacheHitFrozenClock uses it to show the cache's own cost
// apart from reading the clock. The main benchmark uses CoarseClock, the clock the server gives
// the cache (MonotonicClock::Now() costs 45-85 ns on this VM, CoarseClock::Now() about 15 ns).
class FrozenClock final : public Clock {
 public:
  absl::Time Now() const override { return now_; }

 private:
  const absl::Time now_ = MonotonicClock::Get().Now();
};

template <int kKeys, bool kFrozenClock = false>
ShardedCache& WarmShardedCache() {
  static ShardedCache* const cache = [] {
    const Clock& clock =
        kFrozenClock ? *new FrozenClock : static_cast<const Clock&>(CoarseClock::Get());
    auto* c = new ShardedCache({.capacity_bytes = int64_t{256} << 20, .shard_count = 16}, clock);
    for (const std::string& key : GetWorkload<kKeys>().keys) {
      c->Insert(key, MakeValue(std::string(kValueBytes, 'v')), absl::Hours(24));
    }
    return c;
  }();
  return *cache;
}

// The obvious alternative: one reader-writer lock around an unordered_map, readers sharing it.
class SharedMutexMap {
 public:
  void Insert(const std::string& key, std::shared_ptr<const std::string> value) {
    std::unique_lock lock(mu_);
    map_[key] = std::move(value);
  }
  std::shared_ptr<const std::string> Lookup(const std::string& key) const {
    std::shared_lock lock(mu_);
    const auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }
  // The copy-out form, as ShardedCache::Read: the bytes are copied under the reader lock.
  bool LookupCopy(const std::string& key, std::string* out) const {
    std::shared_lock lock(mu_);
    const auto it = map_.find(key);
    if (it == map_.end()) return false;
    out->assign(*it->second);
    return true;
  }

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> map_;
};

template <int kKeys>
SharedMutexMap& WarmBaseline() {
  static SharedMutexMap* const map = [] {
    auto* m = new SharedMutexMap;
    for (const std::string& key : GetWorkload<kKeys>().keys) {
      m->Insert(key, std::make_shared<const std::string>(kValueBytes, 'v'));
    }
    return m;
  }();
  return *map;
}

template <int kKeys, bool kFrozenClock = false>
void BM_ShardedCacheHit(benchmark::State& state) {
  ShardedCache& cache = WarmShardedCache<kKeys, kFrozenClock>();
  const Workload& w = GetWorkload<kKeys>();
  size_t i = StartFor(state);
  for (auto _ : state) {
    std::optional<CacheHit> hit = cache.Lookup(w.keys[w.order[i++ & (kAccesses - 1)]]);
    if (!hit.has_value()) state.SkipWithError("unexpected miss");
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
}

template <int kKeys>
void BM_SharedMutexMapHit(benchmark::State& state) {
  SharedMutexMap& map = WarmBaseline<kKeys>();
  const Workload& w = GetWorkload<kKeys>();
  size_t i = StartFor(state);
  for (auto _ : state) {
    std::shared_ptr<const std::string> hit = map.Lookup(w.keys[w.order[i++ & (kAccesses - 1)]]);
    if (hit == nullptr) state.SkipWithError("unexpected miss");
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_ShardedCacheHit, 100000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_SharedMutexMapHit, 100000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ShardedCacheHit, 1000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_SharedMutexMapHit, 1000)->Threads(1)->Threads(2)->UseRealTime();

// Copy-out hits: the caller receives the value's bytes (copied into its own buffer, as a server
// copies them into a response) instead of a shared reference. Skipping the reference count
// matters at 2 threads: a shared_ptr copy writes the value's control block, a line that every
// core reading that key writes too.
template <int kKeys>
void BM_ShardedCacheHitCopy(benchmark::State& state) {
  ShardedCache& cache = WarmShardedCache<kKeys>();
  const Workload& w = GetWorkload<kKeys>();
  size_t i = StartFor(state);
  std::string out;
  for (auto _ : state) {
    const bool found = cache.Read(w.keys[w.order[i++ & (kAccesses - 1)]],
                                  [&out](const CacheEntryView& entry) { out.assign(entry.value); });
    if (!found) state.SkipWithError("unexpected miss");
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}

template <int kKeys>
void BM_SharedMutexMapHitCopy(benchmark::State& state) {
  SharedMutexMap& map = WarmBaseline<kKeys>();
  const Workload& w = GetWorkload<kKeys>();
  size_t i = StartFor(state);
  std::string out;
  for (auto _ : state) {
    if (!map.LookupCopy(w.keys[w.order[i++ & (kAccesses - 1)]], &out)) {
      state.SkipWithError("unexpected miss");
    }
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_ShardedCacheHitCopy, 100000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_SharedMutexMapHitCopy, 100000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ShardedCacheHitCopy, 1000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_SharedMutexMapHitCopy, 1000)->Threads(1)->Threads(2)->UseRealTime();

template <int kKeys>
void BM_ShardedCacheHitFrozenClock(benchmark::State& state) {
  BM_ShardedCacheHit<kKeys, /*kFrozenClock=*/true>(state);
}
BENCHMARK_TEMPLATE(BM_ShardedCacheHitFrozenClock, 100000)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_ShardedCacheHitFrozenClock, 1000)->Threads(1)->Threads(2)->UseRealTime();

// Inserts of new keys into a full 4 MiB cache (~20k entries of 16 + 100 + overhead bytes), so
// after the first pass every insert evicts. One shared value: this measures the cache, not
// malloc.
void BM_ShardedCacheInsertEvicting(benchmark::State& state) {
  static ShardedCache* const cache =
      new ShardedCache({.capacity_bytes = 4 << 20, .shard_count = 16}, MonotonicClock::Get());
  static const std::vector<std::string>* const keys = [] {
    auto* k = new std::vector<std::string>;
    for (size_t i = 0; i < kAccesses; ++i) k->push_back(absl::StrFormat("new:%012d", i));
    return k;
  }();
  static const Value value = MakeValue(std::string(kValueBytes, 'v'));
  const int64_t evictions_before = state.thread_index() == 0 ? cache->stats().evictions : 0;
  size_t i = StartFor(state);
  for (auto _ : state) {
    cache->Insert((*keys)[i++ & (kAccesses - 1)], value, absl::Hours(1));
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["evictions_per_insert"] =
        benchmark::Counter(static_cast<double>(cache->stats().evictions - evictions_before) /
                           static_cast<double>(state.iterations() * state.threads()));
  }
}
BENCHMARK(BM_ShardedCacheInsertEvicting)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace flightcache
