// Flag parsing for the end-to-end benchmark helpers (flightcache-noop-server,
// flightcache-bench-fill, flightcache-bench-cancel): flag names may be spelt with dashes, as in
// every other flightcache program (--key-prefix or --key_prefix), because the benchmark scripts
// use the dashed spelling throughout. absl flag names cannot contain '-', so the name part of
// each flag argument is rewritten (client::NormalizeFlagArgs) before absl parses the line.
//
// Thread-safety: call once from main() before starting threads.
//
// Usage:
//   std::vector<char*> positional = flightcache::bench::ParseBenchFlags(argc, argv);
#ifndef FLIGHTCACHE_BENCH_BENCH_FLAGS_H_
#define FLIGHTCACHE_BENCH_BENCH_FLAGS_H_

#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "client/common/flags.h"

namespace flightcache::bench {

// Returns the positional arguments, argv[0] first, as absl::ParseCommandLine does. Exits on a bad
// flag (absl's behaviour: status 1 with a message naming the flag).
inline std::vector<std::string> ParseBenchFlags(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> normalized = client::NormalizeFlagArgs(args);
  std::vector<char*> new_argv;
  new_argv.push_back(argv[0]);
  for (std::string& arg : normalized) new_argv.push_back(arg.data());
  const std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(new_argv.size()), new_argv.data());
  return std::vector<std::string>(positional.begin(), positional.end());
}

}  // namespace flightcache::bench

#endif  // FLIGHTCACHE_BENCH_BENCH_FLAGS_H_
