# Small helpers so each unit, test and benchmark is one line in its directory's CMakeLists.txt.

# Sanitizer builds carry line tables only (-g1): enough for symbolized reports with file:line, and
# about a quarter less compile time than full debug information.
function(flightcache_apply_sanitizers)
  if(FLIGHTCACHE_SANITIZE STREQUAL "thread")
    add_compile_options(-fsanitize=thread -g1 -O1)
    add_link_options(-fsanitize=thread)
    # Debian's Abseil is not built with TSan: wrap its synchronization entry points so TSan sees
    # them (see tests/testing/tsan_absl_sync.cc). Each wrapped symbol is named there as REAL(sym).
    set(shim ${PROJECT_SOURCE_DIR}/tests/testing/tsan_absl_sync.cc)
    file(STRINGS ${shim} lines REGEX "REAL\\(_Z[A-Za-z0-9_]+\\)\\(")
    set(wrapped)
    foreach(line ${lines})
      string(REGEX MATCH "REAL\\((_Z[A-Za-z0-9_]+)\\)" _ "${line}")
      list(APPEND wrapped ${CMAKE_MATCH_1})
    endforeach()
    list(REMOVE_DUPLICATES wrapped)
    foreach(sym ${wrapped})
      add_link_options(-Wl,--wrap=${sym})
    endforeach()
    add_library(flightcache_tsan_absl_sync OBJECT ${shim})
    target_link_libraries(flightcache_tsan_absl_sync PUBLIC absl::synchronization)
  elseif(FLIGHTCACHE_SANITIZE STREQUAL "address")
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined -g1 -O1)
    add_link_options(-fsanitize=address,undefined)
  elseif(FLIGHTCACHE_SANITIZE STREQUAL "fuzzer")
    # The fuzz preset (tests/fuzz): every object gets libFuzzer's coverage instrumentation and
    # ASan+UBSan; only the fuzz targets link libFuzzer's main (flightcache_fuzzer adds it).
    if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
      message(FATAL_ERROR "FLIGHTCACHE_SANITIZE=fuzzer needs clang (the fuzz preset uses clang++-14)")
    endif()
    add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined -g1 -O1)
    add_link_options(-fsanitize=address,undefined)
  elseif(NOT FLIGHTCACHE_SANITIZE STREQUAL "")
    message(FATAL_ERROR "FLIGHTCACHE_SANITIZE must be '', 'thread', 'address' or 'fuzzer'")
  endif()
endfunction()

# Every executable of a TSan build needs the Abseil annotation shim its link options refer to.
function(flightcache_link_sanitizer_support target)
  if(TARGET flightcache_tsan_absl_sync)
    target_link_libraries(${target} PRIVATE flightcache_tsan_absl_sync)
  endif()
endfunction()

function(flightcache_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
endfunction()

# flightcache_test(NAME SOURCE LABEL LIBS...): a GoogleTest binary registered with ctest.
# Each test case becomes its own ctest entry so failures name the case and cases run in parallel.
function(flightcache_test name source label)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${ARGN} GTest::gtest GTest::gmock GTest::gtest_main)
  if(TARGET flightcache_test_pch)
    target_precompile_headers(${name} REUSE_FROM flightcache_test_pch)
    target_compile_options(${name} PRIVATE -Winvalid-pch)  # a skipped PCH shows in the log
  endif()
  flightcache_link_sanitizer_support(${name})
  flightcache_warnings(${name})
  include(GoogleTest)
  gtest_discover_tests(${name} PROPERTIES LABELS ${label} TIMEOUT 300
                       DISCOVERY_TIMEOUT 60)
endfunction()

# flightcache_test_pch(): the precompiled header every flightcache_test reuses (tests/testing/
# test_pch.h). GCC only: GCC skips a PCH whose flags differ from a TU's (-Winvalid-pch says so),
# while clang fails the compile. GCC also skips it when a macro it depends on is defined
# differently, hence _FILE_OFFSET_BITS and -pthread for every target (CMakeLists.txt): gRPC's and
# hiredis' flags bring them to the tests that link the server.
option(FLIGHTCACHE_TEST_PCH "Precompile the tests' common headers (GCC)" ON)
function(flightcache_test_pch)
  if(NOT FLIGHTCACHE_TEST_PCH OR NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    return()
  endif()
  add_library(flightcache_test_pch STATIC ${PROJECT_SOURCE_DIR}/tests/testing/test_pch.cc)
  target_link_libraries(flightcache_test_pch PRIVATE GTest::gtest GTest::gmock absl::status
                        absl::statusor absl::strings absl::synchronization absl::time)
  flightcache_warnings(flightcache_test_pch)
  target_precompile_headers(flightcache_test_pch PRIVATE
                            ${PROJECT_SOURCE_DIR}/tests/testing/test_pch.h)
endfunction()

# flightcache_benchmark(NAME SOURCE LIBS...): a Google Benchmark binary (not run by ctest).
function(flightcache_benchmark name source)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${ARGN} benchmark::benchmark benchmark::benchmark_main)
  flightcache_link_sanitizer_support(${name})
  flightcache_warnings(${name})
endfunction()

# flightcache_unit(NAME [SOURCES a.cc ...] [DEPS target ...] [INCLUDE_DIR dir]): one library per
# unit of lib/. Its headers are under INCLUDE_DIR (default lib/include, the core's; lib/support
# passes its own). A unit without sources (header-only templates) becomes an INTERFACE library.
function(flightcache_unit name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;INCLUDE_DIR" ${ARGN})
  if(NOT ARG_INCLUDE_DIR)
    # The core's public headers, and lib/src for its internal ones (included as "internal/x.h").
    set(ARG_INCLUDE_DIR ${PROJECT_SOURCE_DIR}/lib/include ${PROJECT_SOURCE_DIR}/lib/src)
  endif()
  if(ARG_SOURCES)
    add_library(${name} STATIC ${ARG_SOURCES})
    target_include_directories(${name} PUBLIC ${ARG_INCLUDE_DIR})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
    flightcache_warnings(${name})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${ARG_INCLUDE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
endfunction()

# flightcache_fuzzer(NAME SOURCE LIBS...): a libFuzzer target tests/fuzz/SOURCE whose seed corpus
# is tests/fuzz/corpus/NAME (and dictionary tests/fuzz/NAME.dict, if present).
# - fuzz preset (FLIGHTCACHE_SANITIZE=fuzzer): links libFuzzer; the ctest entry fuzz_NAME (label
#   "fuzz") fuzzes for 15 s. New inputs go to the build tree (build/fuzz/tests/fuzz/corpus/NAME),
#   crashes to build/fuzz/tests/fuzz/artifacts/, never into the repository.
# - every other preset: links a replay main instead; the ctest entry fuzz_corpus_NAME (label
#   "fuzz-corpus") runs each seed once, so a kept crash input is a regression test everywhere.
function(flightcache_fuzzer name source)
  set(target fuzz_${name})
  set(seeds ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${name})
  add_executable(${target} ${source})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE ${ARGN})
  flightcache_link_sanitizer_support(${target})
  flightcache_warnings(${target})
  if(FLIGHTCACHE_SANITIZE STREQUAL "fuzzer")
    target_link_options(${target} PRIVATE -fsanitize=fuzzer)
    set(work ${CMAKE_CURRENT_BINARY_DIR}/corpus/${name})
    set(artifacts ${CMAKE_CURRENT_BINARY_DIR}/artifacts)
    file(MAKE_DIRECTORY ${work} ${artifacts})
    set(dict)
    if(EXISTS ${PROJECT_SOURCE_DIR}/tests/fuzz/${name}.dict)
      set(dict -dict=${PROJECT_SOURCE_DIR}/tests/fuzz/${name}.dict)
    endif()
    add_test(NAME ${target}
             COMMAND ${target} -max_total_time=15 -timeout=10 -print_final_stats=1
                     -artifact_prefix=${artifacts}/${name}- ${dict} ${work} ${seeds})
    set_tests_properties(${target} PROPERTIES LABELS fuzz TIMEOUT 120)
  else()
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    add_test(NAME fuzz_corpus_${name} COMMAND ${target} ${seeds})
    set_tests_properties(fuzz_corpus_${name} PROPERTIES LABELS fuzz-corpus TIMEOUT 300)
  endif()
endfunction()

# flightcache_e2e_test(NAME PROGRAMS program ... [LIBS target ...]): the GoogleTest binary
# NAME.cc (label "e2e") that runs built programs. Each program's path is compiled in as
# FLIGHTCACHE_<SHORT>_BIN (flightcache-origin -> FLIGHTCACHE_ORIGIN_BIN) and the test is built
# after them. Nothing is added unless every program is built (the tsan preset builds none).
function(flightcache_e2e_test name)
  cmake_parse_arguments(ARG "" "" "PROGRAMS;LIBS" ${ARGN})
  foreach(program ${ARG_PROGRAMS})
    if(NOT TARGET ${program})
      return()
    endif()
  endforeach()
  flightcache_test(${name} ${name}.cc e2e ${ARG_LIBS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  foreach(program ${ARG_PROGRAMS})
    string(REGEX REPLACE "^flightcache-" "" short ${program})
    string(TOUPPER ${short} short)
    target_compile_definitions(${name} PRIVATE FLIGHTCACHE_${short}_BIN="$<TARGET_FILE:${program}>")
  endforeach()
  add_dependencies(${name} ${ARG_PROGRAMS})
endfunction()
