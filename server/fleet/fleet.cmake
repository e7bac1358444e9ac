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
  flightcache_clock PkgConfig::HIREDIS spdlog::spdlog absl::any_invocable absl::flat_hash_map
  absl::status absl::statusor absl::strings absl::synchronization absl::time Threads::Threads)
flightcache_warnings(flightcache_fleet_redis)
