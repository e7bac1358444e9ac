// RedisReply: one Redis reply, copied out of hiredis so that it can outlive hiredis' buffers and
// travel to any thread.
//
// Thread-safety: a plain value.
#ifndef FLIGHTCACHE_SERVER_FLEET_REDIS_REPLY_H_
#define FLIGHTCACHE_SERVER_FLEET_REDIS_REPLY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace flightcache {

struct RedisReply {
  enum class Type {
    kNil,      // GET of a missing key, SET NX that lost: no value
    kString,   // a bulk string: `str`
    kStatus,   // a status line such as OK: `str`
    kInteger,  // `integer`
    kArray,    // `elements`
    kError,    // only inside an array (a top-level error reply is a failed call): `str`
  };
  Type type = Type::kNil;
  std::string str;
  int64_t integer = 0;
  std::vector<RedisReply> elements;

  bool is_nil() const { return type == Type::kNil; }
  // A status reply "OK" (SET, SELECT, AUTH).
  bool is_ok() const { return type == Type::kStatus && str == "OK"; }
};

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_FLEET_REDIS_REPLY_H_
