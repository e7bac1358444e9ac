// The process's open-file limit (RLIMIT_NOFILE), raised at start-up.
//
// Every client connection costs the server one file descriptor. Many environments start
// processes with a low soft limit (1024, or 256) under a much higher hard limit, and gRPC 1.51's
// listener stops accepting for good once accept4() fails with EMFILE. Raising the soft limit to
// the hard limit at start-up, as Go's runtime and nginx do, moves that cliff as far away as the
// system allows; main.cc then watches for the cliff itself (see logging.h, WatchGrpcLog).
//
// Thread-safety: RaiseOpenFileLimit() changes a process-wide limit: call it once from main,
// before other threads open files. Describe() is a pure function.
//
// Usage:
//   const OpenFileLimit limit = RaiseOpenFileLimit();
//   spdlog::info("{}", limit.Describe());
#ifndef FLIGHTCACHE_SERVER_OPEN_FILE_LIMIT_H_
#define FLIGHTCACHE_SERVER_OPEN_FILE_LIMIT_H_

#include <cstdint>
#include <string>

namespace flightcache {

struct OpenFileLimit {
  // The soft limit found at start-up, the hard limit, and the soft limit now. -1: unlimited.
  int64_t soft_before = 0;
  int64_t hard = 0;
  int64_t soft_after = 0;
  // Empty, or why the limit could not be read or raised (the server runs on regardless).
  std::string error;

  // One line for the log: "open file limit raised from 256 to 4096 (the hard limit)", "... is
  // 4096 (the hard limit)", or what went wrong.
  std::string Describe() const;
};

// Raises the soft RLIMIT_NOFILE to the hard limit and reports what it found and did.
OpenFileLimit RaiseOpenFileLimit();

}  // namespace flightcache

#endif  // FLIGHTCACHE_SERVER_OPEN_FILE_LIMIT_H_
