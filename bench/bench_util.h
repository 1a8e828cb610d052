// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/bench_util.h
// -----------------------------------------------------------------------------
//
// What the Google Benchmark binaries share: the thread counts every thread-safe benchmark runs
// with, the --syncpool_threads=LIST flag that replaces them (1 and 2 by default: this
// project's CI machine class has two cores), and the context lines about the build. Usage, in
// main():
//
//   if (!syncpool::bench::ParseThreadCounts("workload_bench", argc, argv)) return 2;
//   syncpool::bench::SetThreads(benchmark::RegisterBenchmark(...), /*thread_safe=*/true);
//   syncpool::bench::AddBuildContext();
//   benchmark::Initialize(&argc, argv);
//
// ParseThreadCounts() runs before benchmark::Initialize(), which would reject the flag.

#ifndef SYNCPOOL_BENCH_BENCH_UTIL_H_
#define SYNCPOOL_BENCH_BENCH_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"

namespace syncpool {
namespace bench {

// The thread counts to run every thread-safe benchmark with (--syncpool_threads).
inline std::vector<int>& ThreadCounts() {
  static std::vector<int> counts = {1, 2};
  return counts;
}

// Registers the thread counts: all of them, or 1 alone for code that is not thread-safe. Every
// benchmark uses real time, so with several threads a figure is the wall time divided by the
// iterations of all threads.
inline void SetThreads(benchmark::internal::Benchmark* b, bool thread_safe) {
  for (int n : ThreadCounts()) {
    if (n == 1 || thread_safe) b->Threads(n);
  }
  b->UseRealTime();
}

// Adds to the output's context whether debug checks are compiled in (a build without NDEBUG)
// and which per-CPU path the default resource uses.
inline void AddBuildContext() {
#ifndef NDEBUG
  benchmark::AddCustomContext("syncpool", "built without NDEBUG: debug checks on, use -c opt");
#endif
  const syncpool::Stats stats = syncpool::PoolResource::Default().GetStats();
  benchmark::AddCustomContext("syncpool_caches",
                              std::string(stats.mode) + " (" + stats.mode_reason + ")");
}

// Takes --syncpool_threads=LIST out of argv; false (with a message naming `tool`) when LIST is
// not a comma-separated list of positive integers.
inline bool ParseThreadCounts(const char* tool, int& argc, char** argv) {
  constexpr char kFlag[] = "--syncpool_threads=";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], kFlag, sizeof(kFlag) - 1) != 0) {
      argv[kept++] = argv[i];
      continue;
    }
    std::vector<int>& counts = ThreadCounts();
    counts.clear();
    const char* p = argv[i] + sizeof(kFlag) - 1;
    while (*p != '\0') {
      char* end;
      const long n = std::strtol(p, &end, 10);
      if (end == p || n < 1 || n > 1024 || (*end != ',' && *end != '\0')) {
        std::fprintf(stderr, "%s: bad %s value '%s'\n", tool, kFlag, argv[i] + sizeof(kFlag) - 1);
        return false;
      }
      counts.push_back(static_cast<int>(n));
      p = *end == ',' ? end + 1 : end;
    }
    if (counts.empty()) {
      std::fprintf(stderr, "%s: %s needs at least one thread count\n", tool, kFlag);
      return false;
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  return true;
}

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_BENCH_UTIL_H_
