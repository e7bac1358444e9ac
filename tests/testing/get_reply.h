// GetReply: what one FlightCache::Get delivered, for tests that answer loads by hand.
//
// Its state is shared with the callback: a cache destroyed after the reply (a test's locals die
// in reverse order) cancels its loads and answers their waiters, and must not write into a dead
// object.
//
// Thread-safety: calls() may be read while another thread delivers; the result only after calls()
// said it arrived.
#ifndef FLIGHTCACHE_TESTS_TESTING_GET_REPLY_H_
#define FLIGHTCACHE_TESTS_TESTING_GET_REPLY_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "flightcache/flight_cache.h"

namespace flightcache::testing {

class GetReply {
 public:
  FlightCache::Callback Callback() {
    return [s = state_](GetResult r) {
      s->result = std::move(r);
      s->calls.fetch_add(1);
    };
  }
  int calls() const { return state_->calls.load(); }
  const GetResult& result() const { return state_->result; }
  std::string value() const {
    return std::string(state_->result.value ? *state_->result.value : "<null>");
  }
  absl::StatusCode code() const { return state_->result.status.code(); }
  Source source() const { return state_->result.source; }

 private:
  struct State {
    std::atomic<int> calls{0};
    GetResult result;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_GET_REPLY_H_
