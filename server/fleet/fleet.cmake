# The fleet tier's Redis client (hiredis on an epoll event loop). No gRPC: included from
# server/CMakeLists.txt, and from tests/CMakeLists.txt when the server is not built (the tsan
# preset), so that this concurrency code is tested under TSan too; include_guard makes the second
# include a no-op.
include_guard(GLOBAL)

add_library(flightcache_fleet_redis STATIC
  ${CMAKE_CURRENT_LIST_DIR}/event_loop.cc
  ${CMAKE_CURRENT_LIST_DIR}/redis_connection.cc
  ${CMAKE_CURRENT_LIST_DIR}/redis_link.cc
  ${CMAKE_CURRENT_LIST_DIR}/redis_options.cc
  ${CMAKE_CURRENT_LIST_DIR}/redis_subscriber.cc)
target_include_directories(flightcache_fleet_redis PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(flightcache_fleet_redis PUBLIC
  flightcache_clock flightcache_file_util PkgConfig::HIREDIS spdlog::spdlog absl::any_invocable
  absl::flat_hash_map
  absl::status absl::statusor absl::strings absl::synchronization absl::time Threads::Threads)
flightcache_warnings(flightcache_fleet_redis)

# The FleetStore on Redis (the core's seam, lib/include/flightcache/fleet_store.h): key names,
# encodings and the store. The codec and key names are pure, unit-tested without Redis.
add_library(flightcache_fleet_store STATIC
  ${CMAKE_CURRENT_LIST_DIR}/redis_fleet_codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/redis_fleet_keys.cc
  ${CMAKE_CURRENT_LIST_DIR}/redis_fleet_store.cc)
target_include_directories(flightcache_fleet_store PUBLIC ${PROJECT_SOURCE_DIR}
                           ${PROJECT_SOURCE_DIR}/lib/include)
target_link_libraries(flightcache_fleet_store PUBLIC
  flightcache_fleet_redis flightcache_worker_pool absl::any_invocable absl::status
  absl::statusor absl::str_format absl::strings absl::synchronization absl::time)
flightcache_warnings(flightcache_fleet_store)
