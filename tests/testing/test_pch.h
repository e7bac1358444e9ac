// The headers most tests include, precompiled once per build and reused by every test target
// (cmake/FlightcacheHelpers.cmake, flightcache_test): parsing gtest, gmock and Abseil was a third
// to a half of compiling a test. Only headers every test may see: no gRPC, no test fakes.
#ifndef FLIGHTCACHE_TESTS_TESTING_TEST_PCH_H_
#define FLIGHTCACHE_TESTS_TESTING_TEST_PCH_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#endif  // FLIGHTCACHE_TESTS_TESTING_TEST_PCH_H_
