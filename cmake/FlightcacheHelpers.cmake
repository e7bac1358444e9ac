# Small helpers so each unit, test and benchmark is one line in its directory's CMakeLists.txt.

function(flightcache_apply_sanitizers)
  if(FLIGHTCACHE_SANITIZE STREQUAL "thread")
    add_compile_options(-fsanitize=thread -g -O1)
    add_link_options(-fsanitize=thread)
  elseif(FLIGHTCACHE_SANITIZE STREQUAL "address")
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined -g -O1)
    add_link_options(-fsanitize=address,undefined)
  elseif(NOT FLIGHTCACHE_SANITIZE STREQUAL "")
    message(FATAL_ERROR "FLIGHTCACHE_SANITIZE must be '', 'thread' or 'address'")
  endif()
endfunction()

function(flightcache_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

# flightcache_test(NAME SOURCE LABEL LIBS...): a GoogleTest binary registered with ctest.
# Each test case becomes its own ctest entry so failures name the case and cases run in parallel.
function(flightcache_test name source label)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${ARGN} GTest::gtest GTest::gmock GTest::gtest_main)
  flightcache_warnings(${name})
  include(GoogleTest)
  gtest_discover_tests(${name} PROPERTIES LABELS ${label} TIMEOUT 300
                       DISCOVERY_TIMEOUT 60)
endfunction()

# flightcache_benchmark(NAME SOURCE LIBS...): a Google Benchmark binary (not run by ctest).
function(flightcache_benchmark name source)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${ARGN} benchmark::benchmark benchmark::benchmark_main)
  flightcache_warnings(${name})
endfunction()

# flightcache_unit(NAME [SOURCES a.cc ...] [DEPS target ...]): one library per core unit.
# A unit without sources (header-only templates) becomes an INTERFACE library.
function(flightcache_unit name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  if(ARG_SOURCES)
    add_library(${name} STATIC ${ARG_SOURCES})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/lib/include)
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
    flightcache_warnings(${name})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR}/lib/include)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
endfunction()
