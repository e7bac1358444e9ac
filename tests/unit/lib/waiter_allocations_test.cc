// What a waiting caller costs the core in heap allocations: nothing of its own. A flight keeps
// each waiter's callback by value in its subscriber table, and what every waiter of a flight
// shares (the key, the cache) is held once, not copied per waiter; the table's growth is the
// only allocation, O(log n) for n waiters.
//
// This binary replaces the global operator new to count allocations made on the test's thread
// while counting is on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "flightcache/flight_cache.h"
#include "gtest/gtest.h"
#include "internal/single_flight.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"

// GCC sees operator new's malloc and the deletes' free meet after inlining and warns; they pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {

thread_local bool counting = false;
thread_local int64_t allocations = 0;

}  // namespace

// The deletes are replaced too: a sanitizer's own operator delete would see memory from malloc
// here and report a new/delete mismatch (AddressSanitizer does).
void* operator new(std::size_t size) {
  if (counting) ++allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;  // NOLINT(*-no-malloc)
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }               // NOLINT(*-no-malloc)
void operator delete(void* p, std::size_t) noexcept { std::free(p); }  // NOLINT(*-no-malloc)

namespace flightcache {
namespace {

using testing::FakeOrigin;
using testing::FakeTimerQueue;

constexpr int kWaiters = 1000;
// Generous for the subscriber table's doublings (about log2(kWaiters) of them), far below one
// allocation per waiter.
constexpr int64_t kMaxAllocations = 50;

// Allocations made by `fn` on this thread.
template <typename Fn>
int64_t AllocationsOf(Fn&& fn) {
  allocations = 0;
  counting = true;
  fn();
  counting = false;
  return allocations;
}

TEST(WaiterAllocationsTest, JoiningAFlightAllocatesNothingPerWaiter) {
  using Group = SingleFlightGroup<std::string>;
  FakeTimerQueue timers;
  Group group({}, timers);
  std::unique_ptr<LoadHandle<std::string>> load;
  int answered = 0;
  int joined_answers = 0;
  // Captures one pointer each: small enough that the callback itself allocates nothing.
  auto callback = [&answered](const SharedResult<std::string>& r, Group::Outcome) {
    if (r->ok() && **r == "v") ++answered;
  };
  auto loader = [&load](LoadHandle<std::string>&& h) {
    load = std::make_unique<LoadHandle<std::string>>(std::move(h));
  };
  group.Join("key", loader, callback);
  ASSERT_NE(load, nullptr);

  const int64_t n = AllocationsOf([&] {
    for (int i = 0; i < kWaiters; ++i) {
      Group::Joined joined = group.Join("key", loader, [&joined_answers](auto&&, Group::Outcome o) {
        if (o == Group::Outcome::kJoined) ++joined_answers;
      });
      ASSERT_EQ(joined.outcome, Group::Outcome::kJoined);
    }
  });
  EXPECT_LT(n, kMaxAllocations) << "allocations for " << kWaiters << " waiters joining one flight";

  load->Complete(std::string("v"));
  EXPECT_EQ(answered, 1);
  EXPECT_EQ(joined_answers, kWaiters);
}

// Through FlightCache::Get, with stale-if-error on (each waiter used to keep a copy of the key
// for it) and a key too long for std::string's inline buffer.
TEST(WaiterAllocationsTest, GetsWaitingOnOneLoadAllocateNothingPerWaiter) {
  FakeTimerQueue timers;
  FakeOrigin origin;
  FlightCacheOptions options;
  options.store.capacity_bytes = 1 << 20;
  options.stale_if_error = absl::Seconds(30);
  ASSERT_TRUE(options.Validate().ok());
  FlightCache cache(options, origin, timers);
  const std::string key = "a-key-longer-than-the-small-string-buffer";
  int coalesced = 0;
  cache.Get(key, [](const GetResult&) {});
  ASSERT_EQ(origin.fetches(), 1);

  const int64_t n = AllocationsOf([&] {
    for (int i = 0; i < kWaiters; ++i) {
      cache.Get(key, [&coalesced](const GetResult& r) {
        if (r.status.ok() && r.source == Source::kCoalesced && *r.value == "v") ++coalesced;
      });
    }
  });
  EXPECT_LT(n, kMaxAllocations) << "allocations for " << kWaiters << " Gets waiting on one load";

  origin.AnswerValue(0, "v");
  EXPECT_EQ(coalesced, kWaiters);
}

}  // namespace
}  // namespace flightcache
