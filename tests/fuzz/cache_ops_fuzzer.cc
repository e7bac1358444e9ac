// Fuzz target: a byte-driven sequence of cache operations, with the cache's invariants checked
// after every one. Byte 0 picks the layer:
//
// Even: one CacheShard (lib/src/cache_shard.cc), against a model of what it must hold.
//   Ops: Insert (value or negative, TTL), Lookup, Peek, SharedLookup, SharedRead, Erase,
//   RemoveExpired, SetCapacity, time passes.
//   Checks: CheckInvariants() (bytes equal the sum of the entries' charges, entry counts and
//   queue links agree, bytes <= capacity); a hit returns exactly the value last inserted for the
//   key, never one erased, replaced or expired; Erase reports true only for a live entry.
//
// Odd: a FlightCache (lib/src/flight_cache.cc) on a fake clock and an origin the input answers
//   by hand, single-threaded and deterministic. Options (capacity, shards, TTLs, load timeout,
//   concurrency limit and queue, hedging, abandon policy) come from the input.
//   Ops: Get, ReadHit, Invalidate, cancel a waiting Get, answer an origin fetch (a value with or
//   without a TTL, NOT_FOUND, an error), time passes.
//   Checks: bytes within capacity and consistent with the entry count; fetches in flight at the
//   origin never above --max-concurrent-loads, queued loads never above --max-queued-loads;
//   every value served is the one the origin returned for that key (never another key's), is not
//   served past its TTL, and was fetched after the last Invalidate of its key that happened
//   before the Get was issued (no stale value after invalidate); each Get's callback runs
//   exactly once (checked after the cache is destroyed, which answers what is left).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "flightcache/flight_cache.h"
#include "internal/cache_shard.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

using fuzz::FuzzInput;

constexpr int kMaxOps = 400;

// Keys from a four-letter alphabet so that operations hit the same keys; up to 24 bytes, so
// both inline (<= 16 bytes) and heap-allocated keys occur.
std::string Key(FuzzInput& in) {
  std::string key(1 + in.Pick(24), 'a');
  for (char& c : key) c = static_cast<char>('a' + in.Pick(4));
  return key;
}

absl::Duration Millis(FuzzInput& in) { return absl::Milliseconds(in.Byte()); }

// ---- CacheShard against a model ----

struct ModelEntry {
  std::string value;  // meaningful when !negative
  bool negative = false;
  absl::Time expires_at;
};

void CheckShardHit(const std::map<std::string, ModelEntry>& model, const std::string& key,
                   absl::Time now, const std::optional<CacheHit>& hit) {
  if (!hit.has_value()) return;  // a miss is always allowed: the entry may have been evicted
  auto it = model.find(key);
  FUZZ_CHECK(it != model.end()) << "hit on '" << key << "', which was never stored or erased";
  FUZZ_CHECK(now < it->second.expires_at) << "hit on '" << key << "' after it expired";
  FUZZ_CHECK(hit->negative() == it->second.negative) << "hit on '" << key << "' of the wrong kind";
  if (!hit->negative()) {
    FUZZ_CHECK(hit->value.view() == it->second.value)
        << "'" << key << "' returned a value other than the last one inserted";
  }
  FUZZ_CHECK(hit->ttl_remaining > absl::ZeroDuration() &&
             hit->ttl_remaining == it->second.expires_at - now)
      << "'" << key << "': ttl_remaining " << hit->ttl_remaining;
}

void RunShard(FuzzInput& in) {
  CacheShard shard(in.Byte() * 16);
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  std::map<std::string, ModelEntry> model;
  int64_t version = 0;
  for (int op = 0; op < kMaxOps && !in.empty(); ++op) {
    const std::string key = Key(in);
    const size_t hash = CacheShard::Hash(key);
    CacheShard::ReleasedValues released;
    switch (in.Pick(9)) {
      case 0: {  // Insert
        const bool negative = in.Pick(4) == 0;
        std::string value = absl::StrCat(++version, ":");
        value.resize(value.size() + in.Pick(200), 'x');
        const absl::Time expires_at = now + Millis(in) - absl::Milliseconds(8);
        const Value stored = negative ? Value() : MakeValue(value);
        shard.Insert(key, hash, stored, expires_at, now, &released);
        if (CacheShard::Charge(key, stored) > shard.capacity() || expires_at <= now) {
          model.erase(key);
        } else {
          model[key] = ModelEntry{value, negative, expires_at};
        }
        break;
      }
      case 1:
        CheckShardHit(model, key, now, shard.Lookup(key, hash, now, &released));
        break;
      case 2:
        CheckShardHit(model, key, now, shard.Peek(key, hash, now, &released));
        break;
      case 3: {
        bool expired = false;
        CheckShardHit(model, key, now, shard.SharedLookup(key, hash, now, in.Bool(), &expired));
        if (expired) shard.RemoveExpired(key, hash, now, &released);
        break;
      }
      case 4: {
        bool expired = false;
        std::optional<CacheHit> seen;
        if (shard.SharedRead(key, hash, now, &expired, [&](const CacheEntryView& e) {
              seen = CacheHit{.value = e.negative ? Value() : MakeValue(e.value),
                              .expires_at = now + e.ttl_remaining,
                              .ttl_remaining = e.ttl_remaining};
            })) {
          FUZZ_CHECK(seen.has_value()) << "SharedRead found an entry but did not show it";
        }
        CheckShardHit(model, key, now, seen);
        break;
      }
      case 5: {
        const bool live = shard.Erase(key, hash, now, &released);
        auto it = model.find(key);
        FUZZ_CHECK(!live || (it != model.end() && now < it->second.expires_at))
            << "Erase('" << key << "') reported a live entry the model does not have";
        model.erase(key);
        break;
      }
      case 6:
        shard.RemoveExpired(key, hash, now, &released);
        break;
      case 7:
        shard.SetCapacity(in.Byte() * 16, now, &released);
        break;
      case 8:
        now += Millis(in);
        break;
    }
    const absl::Status ok = shard.CheckInvariants();
    FUZZ_CHECK(ok.ok()) << ok;
    FUZZ_CHECK(shard.bytes() <= shard.capacity());
    FUZZ_CHECK(shard.entries() > 0 || shard.bytes() == 0);
  }
}

// ---- FlightCache with a hand-answered origin ----

// One origin fetch: what it was for and, once answered, what it returned.
struct FetchRecord {
  std::string key;
  int64_t generation = 0;  // the key's invalidation count when the fetch started
  bool answered = false;
  absl::Time answered_at;
  absl::Duration ttl;  // as stored: the origin's TTL, or the default
  FetchCallback done;
  std::unique_ptr<std::stop_callback<std::function<void()>>> on_cancel;
};

// Values are "<fetch number>|<key>", so a served value names the fetch it came from.
class HandOrigin final : public Origin {
 public:
  HandOrigin(const std::map<std::string, int64_t>& generations, const Clock& clock)
      : generations_(generations), clock_(clock) {}

  void Fetch(const FetchRequest& request, std::stop_token cancel, FetchCallback done) override {
    const size_t id = fetches_.size();
    auto record = std::make_unique<FetchRecord>();
    record->key = request.key;
    auto g = generations_.find(request.key);
    record->generation = g == generations_.end() ? 0 : g->second;
    record->done = std::move(done);
    fetches_.push_back(std::move(record));
    open_.push_back(id);
    fetches_[id]->on_cancel = std::make_unique<std::stop_callback<std::function<void()>>>(
        std::move(cancel), [this, id] { Answer(id, absl::CancelledError("cancelled")); });
  }
  std::string Describe() const override { return "hand://"; }

  // Answers fetch `id` unless it was answered already.
  void Answer(size_t id, absl::StatusOr<FetchResult> result, absl::Duration stored_ttl = {}) {
    FetchRecord& f = *fetches_[id];
    if (f.answered) return;
    f.answered = true;
    f.answered_at = clock_.Now();
    f.ttl = stored_ttl;
    std::erase(open_, id);
    std::exchange(f.done, nullptr)(std::move(result));
  }

  const std::vector<size_t>& open() const { return open_; }
  const FetchRecord& fetch(size_t id) const { return *fetches_.at(id); }

 private:
  const std::map<std::string, int64_t>& generations_;
  const Clock& clock_;
  std::vector<std::unique_ptr<FetchRecord>> fetches_;
  std::vector<size_t> open_;  // not answered yet
};

struct GetRecord {
  std::string key;
  int64_t generation = 0;  // the key's invalidation count when Get was called
  int calls = 0;           // how often the callback ran
  GetHandle handle;
};

class FlightCacheRun final {
 public:
  explicit FlightCacheRun(FuzzInput& in) : in_(in) {
    options_.store.capacity_bytes = 64 + in.Byte() * 32;
    options_.store.shard_count = 1 << in.Pick(3);
    options_.default_ttl = absl::Milliseconds(1 + in.Byte());
    options_.negative_ttl = absl::Milliseconds(in.Byte());
    options_.load_timeout = absl::Milliseconds(1 + in.Byte());
    options_.abandoned_loads = in.Bool() ? AbandonPolicy::kFinish : AbandonPolicy::kCancel;
    options_.max_concurrent_loads = 1 + in.Pick(4);
    options_.max_queued_loads = in.Pick(5);
    options_.max_key_bytes = 20;
    options_.max_value_bytes = 64;
    options_.hedge.enabled = in.Bool();
    options_.hedge.delay = absl::Milliseconds(1 + in.Byte());
    options_.hedge.budget = 1;
    FUZZ_CHECK(options_.Validate().ok()) << options_.Validate();
  }

  void Run() {
    // Declared before the cache, so that the callbacks the cache's destructor runs find them.
    testing::FakeTimerQueue timers;
    HandOrigin origin(generations_, timers.clock());
    std::vector<std::unique_ptr<GetRecord>> gets;
    {
      FlightCache cache(options_, origin, timers);
      for (int op = 0; op < kMaxOps && !in_.empty(); ++op) {
        Step(cache, origin, timers, gets);
        CheckStats(cache, origin);
      }
    }
    for (const auto& g : gets) {
      FUZZ_CHECK(g->calls == 1) << "a Get's callback ran " << g->calls << " times";
    }
  }

 private:
  void Step(FlightCache& cache, HandOrigin& origin, testing::FakeTimerQueue& timers,
            std::vector<std::unique_ptr<GetRecord>>& gets) {
    switch (in_.Pick(6)) {
      case 0: {  // Get
        auto g = std::make_unique<GetRecord>();
        g->key = Key(in_);
        g->generation = generations_[g->key];
        GetRecord* raw = g.get();
        gets.push_back(std::move(g));
        raw->handle = cache.Get(raw->key, [this, raw, &origin, &timers](GetResult r) {
          ++raw->calls;
          FUZZ_CHECK(raw->calls == 1) << "a Get's callback ran twice";
          if (r.status.ok()) CheckServed(origin, timers.clock().Now(), *raw, r.value.view(), r);
        });
        break;
      }
      case 1: {  // ReadHit: the server's hit path
        GetRecord probe{.key = Key(in_)};
        probe.generation = generations_[probe.key];
        cache.ReadHit(probe.key, [&](const CacheEntryView& e) {
          if (e.negative) return;
          CheckServed(origin, timers.clock().Now(), probe, e.value,
                      GetResult{.source = Source::kHit, .ttl_remaining = e.ttl_remaining});
        });
        break;
      }
      case 2: {  // Invalidate: the origin's data changed, then the application invalidated
        const std::string key = Key(in_);
        ++generations_[key];
        cache.Invalidate({key});
        break;
      }
      case 3:  // a caller gives up
        if (!gets.empty()) gets[in_.Byte() % gets.size()]->handle.Cancel();
        break;
      case 4: {  // the origin answers
        if (origin.open().empty()) break;
        const size_t id = origin.open()[in_.Byte() % origin.open().size()];
        const std::string& key = origin.fetch(id).key;
        switch (in_.Pick(4)) {
          case 0:
          case 1: {
            const absl::Duration ttl = in_.Bool() ? Millis(in_) : absl::ZeroDuration();
            std::string value = absl::StrCat(id, "|", key);
            value.resize(value.size() + in_.Pick(48), '.');  // sometimes over --max-value-bytes
            origin.Answer(id, FetchResult{value, ttl},
                          ttl > absl::ZeroDuration() ? ttl : options_.default_ttl);
            break;
          }
          case 2:
            origin.Answer(id, absl::NotFoundError("no such key"));
            break;
          default:
            origin.Answer(id, absl::UnavailableError("origin down"));
        }
        break;
      }
      case 5:
        timers.Advance(Millis(in_));
        break;
    }
  }

  // A value served for `get`: the origin's answer for that key, fetched after the Get's view of
  // the key's last invalidation, and within its TTL.
  void CheckServed(const HandOrigin& origin, absl::Time now, const GetRecord& get,
                   std::string_view value, const GetResult& r) {
    const size_t bar = value.find('|');
    size_t id = 0;
    FUZZ_CHECK(bar != std::string_view::npos &&
               absl::SimpleAtoi(absl::string_view(value.data(), bar), &id))
        << "'" << get.key << "' served a value the origin never sent";
    const FetchRecord& f = origin.fetch(id);
    FUZZ_CHECK(f.key == get.key) << "'" << get.key << "' served the value of '" << f.key << "'";
    FUZZ_CHECK(f.generation >= get.generation)
        << "'" << get.key << "' served a value fetched before it was invalidated (fetch " << id
        << ")";
    FUZZ_CHECK(r.ttl_remaining > absl::ZeroDuration() && r.ttl_remaining <= f.ttl)
        << "'" << get.key << "': ttl_remaining " << r.ttl_remaining << " of " << f.ttl;
    if (r.source == Source::kHit) {
      FUZZ_CHECK(now < f.answered_at + f.ttl) << "'" << get.key << "' served after its TTL";
    }
  }

  void CheckStats(const FlightCache& cache, const HandOrigin& origin) const {
    const FlightCacheStats s = cache.stats();
    FUZZ_CHECK(s.bytes >= 0 && s.bytes <= options_.store.capacity_bytes)
        << "bytes " << s.bytes << " over capacity " << options_.store.capacity_bytes;
    FUZZ_CHECK(s.bytes >= s.entries * kCacheEntryOverheadBytes &&
               s.bytes <= s.entries * (kCacheEntryOverheadBytes + options_.max_key_bytes +
                                       options_.max_value_bytes))
        << s.entries << " entries but " << s.bytes << " bytes";
    FUZZ_CHECK(static_cast<int64_t>(origin.open().size()) <= options_.max_concurrent_loads)
        << origin.open().size() << " fetches in flight, limit " << options_.max_concurrent_loads;
    FUZZ_CHECK(s.loads_queued >= 0 && s.loads_queued <= options_.max_queued_loads)
        << s.loads_queued << " loads queued, limit " << options_.max_queued_loads;
    FUZZ_CHECK(s.loads_inflight >= 0);
  }

  FuzzInput& in_;
  FlightCacheOptions options_;
  std::map<std::string, int64_t> generations_;  // invalidations per key
};

}  // namespace
}  // namespace flightcache

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  flightcache::fuzz::FuzzInput in(data, size);
  if (in.Byte() % 2 == 0) {
    flightcache::RunShard(in);
  } else {
    flightcache::FlightCacheRun(in).Run();
  }
  return 0;
}
