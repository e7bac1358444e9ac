// What the fuzz targets share: FUZZ_CHECK, and a reader that turns the fuzzer's bytes into
// choices.
//
// FUZZ_CHECK(cond) << "why": when `cond` is false, prints the message and aborts, which libFuzzer
// reports as a crash (and keeps the input). Unlike assert() it is on in every build type.
//
// FuzzInput hands out the input front to back: small integers for choosing operations and
// strings for keys and values. Once the bytes run out it returns zeros and empty strings, so a
// target never reads past the end and every prefix of an input is itself a valid input.
#ifndef FLIGHTCACHE_TESTS_FUZZ_FUZZ_CHECK_H_
#define FLIGHTCACHE_TESTS_FUZZ_FUZZ_CHECK_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>

namespace flightcache::fuzz {

class CheckFailure final {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    message_ << file << ":" << line << ": FUZZ_CHECK(" << condition << ") failed: ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << message_.str() << std::endl;
    std::abort();
  }
  template <typename T>
  CheckFailure& operator<<(const T& v) {
    message_ << v;
    return *this;
  }

 private:
  std::ostringstream message_;
};

#define FUZZ_CHECK(condition) \
  if (condition) {            \
  } else                      \
    ::flightcache::fuzz::CheckFailure(__FILE__, __LINE__, #condition)

class FuzzInput final {
 public:
  FuzzInput(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }

  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  // A number in [0, n). REQUIRES: 0 < n <= 256.
  int Pick(int n) { return Byte() % n; }
  bool Bool() { return (Byte() & 1) != 0; }
  // A length-prefixed string of at most `max` bytes (the length byte is taken modulo max + 1).
  std::string String(size_t max) {
    const size_t n = std::min<size_t>(Byte() % (max + 1), rest_.size());
    std::string s(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return s;
  }
  // Everything that is left.
  std::string Rest() {
    std::string s(rest_);
    rest_ = {};
    return s;
  }

 private:
  std::string_view rest_;
};

}  // namespace flightcache::fuzz

#endif  // FLIGHTCACHE_TESTS_FUZZ_FUZZ_CHECK_H_
