# The gRPC-free client libraries: loadgen workload / runner / stats (the demo origin's model is
# lib's flightcache_sim; the helpers every program shares are in lib/support). Included from
# client/CMakeLists.txt, and from tests/unit/CMakeLists.txt when the client directory is not built
# (the tsan preset sets FLIGHTCACHE_BUILD_SERVER=OFF and has no gRPC), so that these units are
# tested under TSan too.
include_guard(GLOBAL)
set(FLIGHTCACHE_CLIENT_DIR ${CMAKE_CURRENT_LIST_DIR})

# flightcache_client_lib(NAME SOURCES a.cc ... DEPS target ...): one static library per unit;
# headers are included as "client/<dir>/<name>.h".
function(flightcache_client_lib name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  list(TRANSFORM ARG_SOURCES PREPEND ${FLIGHTCACHE_CLIENT_DIR}/)
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  flightcache_warnings(${name})
endfunction()

flightcache_client_lib(flightcache_loadgen_histogram SOURCES loadgen/histogram.cc)
flightcache_client_lib(flightcache_loadgen_workload SOURCES loadgen/workload.cc
                       DEPS absl::status absl::statusor absl::strings absl::synchronization
                            absl::time)
flightcache_client_lib(flightcache_loadgen_stats SOURCES loadgen/recorder.cc loadgen/report.cc
                       DEPS flightcache_loadgen_histogram flightcache_json absl::status
                            absl::strings absl::str_format absl::synchronization absl::time
                            absl::span)
# --hdr-log: HdrHistogram's interval log (zlib-deflated V2 encodings).
find_package(ZLIB REQUIRED)
flightcache_client_lib(flightcache_loadgen_hdr_log SOURCES loadgen/hdr_log.cc
                       DEPS flightcache_loadgen_histogram ZLIB::ZLIB absl::status absl::statusor
                            absl::strings absl::str_format absl::time)
flightcache_client_lib(flightcache_loadgen_svg_plot SOURCES loadgen/svg_plot.cc
                       DEPS absl::strings absl::str_format)
flightcache_client_lib(flightcache_loadgen_runner SOURCES loadgen/runner.cc
                       DEPS flightcache_loadgen_stats flightcache_loadgen_workload
                            flightcache_timer_queue absl::any_invocable absl::synchronization)
add_library(flightcache_loadgen_lib INTERFACE)
target_link_libraries(flightcache_loadgen_lib INTERFACE flightcache_loadgen_histogram
                      flightcache_loadgen_workload flightcache_loadgen_stats
                      flightcache_loadgen_runner)
