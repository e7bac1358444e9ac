// RedisOptions for tests against a real redis-server (tests/testing/redis_process.h) on this host.
//
// Not the 20 ms default command timeout: on a loaded 2-core machine a healthy round trip can take
// longer. Tests about timeouts set their own. Backoff is short so that reconnect tests are quick.
#ifndef FLIGHTCACHE_TESTS_TESTING_REDIS_TEST_OPTIONS_H_
#define FLIGHTCACHE_TESTS_TESTING_REDIS_TEST_OPTIONS_H_

#include "absl/time/time.h"
#include "server/fleet/redis_options.h"

namespace flightcache::testing {

inline RedisOptions TestRedisOptions(int port) {
  RedisOptions options;
  options.endpoint = {.host = "127.0.0.1", .port = port};
  options.command_timeout = absl::Seconds(2);
  options.stall_timeout = absl::Seconds(2);
  options.min_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(100);
  return options;
}

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_REDIS_TEST_OPTIONS_H_
