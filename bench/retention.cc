// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/retention.cc
// -----------------------------------------------------------------------------
//
// What each retention policy costs a steady workload across many sweeps:
//
//   bazel run -c opt //bench:retention
//   bazel run -c opt //bench:retention -- --seconds=4 --sweep_ms=20 --threads=2
//
// Flags (--name=value or --name value): --seconds=4 (each policy's run), --sweep_ms=20,
// --warmup_ms=500 (not counted), --threads=2.
//
// The workload: each of --threads threads repeats rounds of taking buffers of 64 B to 1 KiB
// from one PoolResource and giving them back. Its demand moves the way a server's does: a busy
// phase (128 buffers held at once, a few per size class, well within the per-CPU capacities)
// and a quiet phase (8), each lasting 1.5 sweep intervals, so that some epochs see the busy
// phase and some do not. The resource is swept by its own
// Sweeper every --sweep_ms; its upstream counts its calls (and passes them to
// new_delete_resource()).
//
// For each policy (Retention::kWorkingSet, the default, and Retention::kVictim, Go's) the tool
// runs the workload in the same process one after the other, skips the first --warmup_ms, and
// prints one line per policy:
//
//   RESULT <policy> upstream_allocations_per_s=<n> misses_per_s=<n> rounds_per_s=<n> sweeps=<n>
//
// Fewer upstream allocations per second means fewer refills after sweeps. A miss takes a batch
// of blocks from upstream (Options::refill_bytes), so misses_per_s counts the refills and
// upstream_allocations_per_s the blocks they brought. (Pages are not
// discarded here: Options::discard_min_bytes is 0, so only the policy differs.)

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/flags.h"
#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace {

using Clock = std::chrono::steady_clock;

// Counts the calls it passes on.
class CountingResource final : public std::pmr::memory_resource {
 public:
  uint64_t allocations() const { return allocations_.load(std::memory_order_relaxed); }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    allocations_.fetch_add(1, std::memory_order_relaxed);
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::atomic<uint64_t> allocations_{0};
};

struct Flags {
  double seconds = 4;
  int sweep_ms = 20;
  int warmup_ms = 500;
  int threads = 2;
};

// Parses the flags (bench/flags.h); exits with a message on anything else.
Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  syncpool::bench::FlagParser parser("retention");
  parser.Double("seconds", 0.01, 3600, &flags.seconds);
  parser.Int("sweep_ms", 1, 60'000, &flags.sweep_ms);
  parser.Int("warmup_ms", 0, 3'600'000, &flags.warmup_ms);
  parser.Int("threads", 1, 1024, &flags.threads);
  if (!parser.Parse(argc, argv)) {
    std::fprintf(stderr,
                 "usage: retention [--seconds=4] [--sweep_ms=20] [--warmup_ms=500] [--threads=2]\n");
    std::exit(2);
  }
  if (flags.warmup_ms >= flags.seconds * 1000) {
    std::fprintf(stderr, "retention: --warmup_ms must be shorter than --seconds\n");
    std::exit(2);
  }
  return flags;
}

void Run(const Flags& flags, syncpool::Retention retention, const char* name) {
  CountingResource upstream;
  syncpool::Sweeper sweeper(
      syncpool::Sweeper::Options::Every(std::chrono::milliseconds(flags.sweep_ms)));
  syncpool::Options options;
  options.sweeper = &sweeper;
  options.retention = retention;
  options.discard_min_bytes = 0;
  options.debug_checks = false;
  syncpool::PoolResource resource(options, &upstream);

  const Clock::time_point start = Clock::now();
  const Clock::time_point measure_from = start + std::chrono::milliseconds(flags.warmup_ms);
  const Clock::time_point end =
      start + std::chrono::microseconds(static_cast<int64_t>(flags.seconds * 1e6));
  const auto phase = std::chrono::microseconds(flags.sweep_ms * 1500);  // 1.5 intervals.

  std::atomic<uint64_t> upstream_at_start{0};
  std::atomic<uint64_t> misses_at_start{0};
  std::atomic<uint64_t> sweeps_at_start{0};
  std::atomic<bool> measuring{false};
  std::atomic<uint64_t> rounds{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < flags.threads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t) + 1);
      std::uniform_int_distribution<size_t> size_of(64, 1024);
      std::vector<std::pair<void*, size_t>> held;
      held.reserve(128);
      uint64_t my_rounds = 0;
      for (Clock::time_point now = Clock::now(); now < end; now = Clock::now()) {
        if (t == 0 && !measuring.load(std::memory_order_relaxed) && now >= measure_from) {
          upstream_at_start.store(upstream.allocations());
          misses_at_start.store(resource.GetStats().misses);
          sweeps_at_start.store(sweeper.epochs());
          measuring.store(true);
        }
        const bool busy = ((now - start) / phase) % 2 == 0;
        const size_t demand = busy ? 128 : 8;
        for (size_t i = 0; i < demand; ++i) {
          const size_t size = size_of(rng);
          held.emplace_back(resource.allocate(size), size);
        }
        for (const auto& [p, size] : held) resource.deallocate(p, size);
        held.clear();
        if (measuring.load(std::memory_order_relaxed)) ++my_rounds;
      }
      rounds.fetch_add(my_rounds);
    });
  }
  for (std::thread& th : threads) th.join();
  const double measured_s =
      std::chrono::duration<double>(end - measure_from).count();
  const uint64_t upstream_calls = upstream.allocations() - upstream_at_start.load();
  const syncpool::Stats stats = resource.GetStats();
  std::printf(
      "RESULT %s upstream_allocations_per_s=%.0f misses_per_s=%.0f rounds_per_s=%.0f sweeps=%llu\n",
      name, static_cast<double>(upstream_calls) / measured_s,
      static_cast<double>(stats.misses - misses_at_start.load()) / measured_s,
      static_cast<double>(rounds.load()) / measured_s,
      static_cast<unsigned long long>(sweeper.epochs() - sweeps_at_start.load()));
  std::printf("  %s\n", stats.ToString().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  std::printf("retention: %d threads, sweeps every %d ms, %.1f s each (first %d ms not counted)\n",
              flags.threads, flags.sweep_ms, flags.seconds, flags.warmup_ms);
  Run(flags, syncpool::Retention::kWorkingSet, "working_set");
  Run(flags, syncpool::Retention::kVictim, "victim");
  return 0;
}
