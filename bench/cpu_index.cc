// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/cpu_index.cc
// -----------------------------------------------------------------------------
//
// What the rseq caches hold when threads hop over the CPUs, by the index of their columns
// (SYNCPOOL_CPU_ID): T threads, each pinned to every CPU it may use in turn, `rounds` times
// over, and at each stop allocating a working set of W blocks and giving them back; the main
// thread is one of the T. No sweep runs (the sweeper has no thread), so the caches keep what
// they were given. Prints the index
// in use (Stats::mode_reason), the columns made (Stats::caches) and the bytes cached.
//
//   bazel run -c opt //bench:cpu_index -- [threads [working_set [bytes [rounds]]]]
//   SYNCPOOL_CPU_ID=cpu bazel-bin/bench/cpu_index ...   # the columns by CPU id
//
// Defaults: 1 thread, 256 blocks of 1 KiB, 10 rounds. One line of key=value pairs. A fifth
// argument `default` uses the default options instead, whose sweeper (Sweeper::Default()) has
// a thread of its own: then the process has one thread more than the workers.

#include <sched.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace {

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

long Arg(int argc, char** argv, int i, long fallback) {
  if (argc <= i) return fallback;
  const long v = std::strtol(argv[i], nullptr, 10);
  if (v <= 0) {
    std::fprintf(stderr, "cpu_index: argument %d must be a positive integer\n", i);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = static_cast<int>(Arg(argc, argv, 1, 1));
  const size_t working_set = static_cast<size_t>(Arg(argc, argv, 2, 256));
  const size_t bytes = static_cast<size_t>(Arg(argc, argv, 3, 1024));
  const int rounds = static_cast<int>(Arg(argc, argv, 4, 10));
  const std::vector<int> cpus = AllowedCpus();

  const bool default_options = argc > 5 && std::string(argv[5]) == "default";
  syncpool::Sweeper sweeper(syncpool::Sweeper::Options::Manual());
  syncpool::Options options;
  if (!default_options) options.sweeper = &sweeper;
  syncpool::PoolResource resource(options);
  int pin_failures = 0;
  auto hop = [&](std::vector<void*>& blocks) {
    int failures = 0;
    for (int r = 0; r < rounds; ++r) {
      for (int cpu : cpus) {
        if (!PinTo(cpu)) ++failures;
        for (void*& b : blocks) b = resource.allocate(bytes);
        for (void* b : blocks) resource.deallocate(b, bytes);
      }
    }
    return failures;
  };
  std::vector<std::thread> workers;
  std::vector<int> failures(static_cast<size_t>(threads), 0);
  // The main thread is worker 0: with the manual sweeper, the process runs exactly `threads`
  // threads (the kernel keeps concurrency ids below the number of threads of the process,
  // sleeping ones included while they hold an id).
  auto work = [&](int t) {
    std::vector<void*> blocks(working_set);
    failures[static_cast<size_t>(t)] = hop(blocks);
  };
  for (int t = 1; t < threads; ++t) workers.emplace_back(work, t);
  work(0);
  for (std::thread& w : workers) w.join();
  for (int f : failures) pin_failures += f;
  const syncpool::Stats s = resource.GetStats();
  std::printf(
      "cpus=%zu threads=%d sweeper=%s working_set=%zu bytes=%zu rounds=%d pin_failures=%d "
      "caches=%llu cached_bytes=%llu upstream_bytes=%llu index=\"%s\"\n",
      cpus.size(), threads, default_options ? "default" : "manual", working_set, bytes, rounds,
      pin_failures,
      static_cast<unsigned long long>(s.caches),
      static_cast<unsigned long long>(s.cached_bytes()),
      static_cast<unsigned long long>(s.upstream_bytes), s.mode_reason);
  return pin_failures == 0 ? 0 : 1;
}
