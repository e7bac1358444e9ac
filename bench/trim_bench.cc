// What a malloc_trim(0) costs (server/memory_trimmer.h explains why the server trims only after
// its RSS grew): a heap of 128-byte chunks (a cached 100-byte value's chunk), either all live or
// with every other one freed — 1,000,000 scattered free chunks that no trim can return, since
// each shares its page with live neighbours, yet every trim walks them again, holding the arena's
// lock.
//
//   build/release/bench/trim_bench
#include <malloc.h>

#include <cstdlib>
#include <vector>

#include "benchmark/benchmark.h"

namespace {

void BM_MallocTrim(benchmark::State& state) {
  const size_t chunks_count = static_cast<size_t>(state.range(0));
  const bool fragmented = state.range(1) != 0;
  std::vector<void*> chunks(chunks_count);
  for (void*& chunk : chunks) chunk = std::malloc(128);
  if (fragmented) {
    for (size_t i = 0; i < chunks.size(); i += 2) {
      std::free(chunks[i]);
      chunks[i] = nullptr;
    }
  }
  malloc_trim(0);  // the first trim also returns what whole pages there are
  for (auto _ : state) benchmark::DoNotOptimize(malloc_trim(0));
  for (void* chunk : chunks) std::free(chunk);
  state.counters["free_chunks"] = fragmented ? static_cast<double>(chunks_count / 2) : 0;
}
// 2,000,000 chunks: about a 256 MiB cache's worth.
BENCHMARK(BM_MallocTrim)
    ->Args({2'000'000, 0})
    ->Args({200'000, 1})
    ->Args({2'000'000, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace
