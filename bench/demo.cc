// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/demo.cc
// -----------------------------------------------------------------------------
//
// A short demonstration of syncpool, printing three plain tables:
//
//   bazel run -c opt //bench:demo
//
//   (a) The classic sync.Pool benchmark (Go's BenchmarkAlloc against BenchmarkPool, a 1 KiB
//       buffer), in C++: new and delete of the buffer against Pool<Buf> Get and Put.
//   (b) One allocate and one deallocate through a std::pmr::memory_resource*, at 64 B, 1 KiB and
//       64 KiB: syncpool's PoolResource against new_delete_resource() and
//       synchronized_pool_resource.
//   (c) Memory comes back: a burst through a PoolResource fills its caches; two sweeps later
//       they are empty again, as Go's pools are after two garbage collections.
//
// Every figure is measured when the program runs: nanoseconds per operation, the wall time from
// the moment all threads start to the moment the last one ends, divided by the operations of
// all threads (Google Benchmark's UseRealTime with threads), the best of kRepetitions runs.
// Absolute times vary between machines and runs; the ratios taken in one run are what compare.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <memory>
#include <memory_resource>
#include <thread>
#include <vector>

#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRepetitions = 11;
#ifdef NDEBUG
constexpr long kOpsPerThread = 1 << 18;
#else
constexpr long kOpsPerThread = 1 << 12;  // Debug checks make operations far slower.
#endif
constexpr long kWarmupOps = 1 << 10;
constexpr int kThreadCounts[] = {1, 2};

// The buffer of the classic benchmark: 1 KiB.
struct Buf {
  char data[1024];
};

// Makes the optimizer assume `p` escapes and memory is read and written, so that an allocation
// and its release are not elided.
inline void Escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

// NsPerOp()
//
// Runs `body(n)`, a loop of n operations, on `threads` threads released together, and returns
// the wall-clock nanoseconds per operation over all threads, the best of kRepetitions runs.
// Each thread first runs kWarmupOps operations, so that caches are in their steady state.
template <typename Body>
double NsPerOp(int threads, const Body& body) {
  double best = std::numeric_limits<double>::infinity();
  for (int rep = 0; rep < kRepetitions; ++rep) {
    std::atomic<int> ready{0};
    std::vector<Clock::time_point> start(threads), stop(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        body(kWarmupOps);
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();
        start[t] = Clock::now();
        body(kOpsPerThread);
        stop[t] = Clock::now();
      });
    }
    for (std::thread& worker : workers) worker.join();
    const auto wall = *std::max_element(stop.begin(), stop.end()) -
                      *std::min_element(start.begin(), start.end());
    const double ns = std::chrono::duration<double, std::nano>(wall).count();
    best = std::min(best, ns / (static_cast<double>(kOpsPerThread) * threads));
  }
  return best;
}

// (a) The classic benchmark.
void AllocVersusPool() {
  syncpool::Pool<Buf> pool([] { return std::make_unique<Buf>(); });
  const auto alloc = [](long n) {
    for (long i = 0; i < n; ++i) {
      Buf* buf = new Buf;
      Escape(buf);
      delete buf;
    }
  };
  const auto get_put = [&pool](long n) {
    for (long i = 0; i < n; ++i) {
      auto buf = pool.Get();  // Goes back to the pool at the end of the iteration.
      Escape(buf.get());
    }
  };

  std::printf("(a) A 1 KiB buffer: new+delete (Alloc) vs syncpool::Pool<Buf> Get+Put (Pool)\n\n");
  std::printf("%-8s %12s %12s %12s\n", "threads", "Alloc ns/op", "Pool ns/op", "Alloc/Pool");
  for (int threads : kThreadCounts) {
    const double alloc_ns = NsPerOp(threads, alloc);
    const double pool_ns = NsPerOp(threads, get_put);
    std::printf("%-8d %12.2f %12.2f %11.2fx\n", threads, alloc_ns, pool_ns, alloc_ns / pool_ns);
  }
  std::printf("\n");
}

// One allocate+deallocate round trip of `bytes` through `mr`, n times.
struct RoundTrips {
  std::pmr::memory_resource* mr;
  size_t bytes;
  void operator()(long n) const {
    for (long i = 0; i < n; ++i) {
      void* p = mr->allocate(bytes);
      Escape(p);
      mr->deallocate(p, bytes);
    }
  }
};

// (b) Round trips through three memory resources.
void RoundTripTable() {
  std::pmr::memory_resource* syncpool_mr = &syncpool::PoolResource::Default();
  std::pmr::memory_resource* new_delete_mr = std::pmr::new_delete_resource();
  std::pmr::synchronized_pool_resource synchronized_pool;

  std::printf("(b) allocate+deallocate through std::pmr::memory_resource*, ns/op\n");
  std::printf("    syncpool = PoolResource::Default(); new_delete = new_delete_resource();\n");
  std::printf("    sync_pool = synchronized_pool_resource (default options)\n\n");
  std::printf("%-7s %-8s %10s %11s %10s %15s %14s\n", "bytes", "threads", "syncpool",
              "new_delete", "sync_pool", "new_delete/sp", "sync_pool/sp");
  for (size_t bytes : {size_t{64}, size_t{1024}, size_t{65536}}) {
    for (int threads : kThreadCounts) {
      const double sp = NsPerOp(threads, RoundTrips{syncpool_mr, bytes});
      const double nd = NsPerOp(threads, RoundTrips{new_delete_mr, bytes});
      const double sync = NsPerOp(threads, RoundTrips{&synchronized_pool, bytes});
      std::printf("%-7zu %-8d %10.2f %11.2f %10.2f %14.2fx %13.2fx\n", bytes, threads, sp, nd,
                  sync, nd / sp, sync / sp);
    }
  }
  std::printf("\n");
}

// (c) A burst fills a PoolResource's caches; two sweeps empty them.
void MemoryComesBack() {
  syncpool::Sweeper::Options sweeper_options;
  sweeper_options.background = false;  // Epochs run only when SweepNow() is called below.
  syncpool::Sweeper sweeper(sweeper_options);
  syncpool::Options options;
  options.sweeper = &sweeper;
  syncpool::PoolResource pool(options);

  // The burst: 1024 blocks of 64 B, 1 KiB and 16 KiB in turn, all live at once, then freed.
  constexpr size_t kSizes[] = {64, 1024, 16384};
  constexpr int kBlocks = 1024;
  std::vector<void*> blocks(kBlocks);
  for (int i = 0; i < kBlocks; ++i) blocks[i] = pool.allocate(kSizes[i % 3]);
  for (int i = 0; i < kBlocks; ++i) pool.deallocate(blocks[i], kSizes[i % 3]);

  std::printf("(c) Memory comes back: %d blocks of 64 B, 1 KiB and 16 KiB allocated and freed\n",
              kBlocks);
  std::printf("    through a PoolResource with its own sweeper\n\n");
  const auto show = [&pool](const char* when) {
    const syncpool::Stats stats = pool.GetStats();
    std::printf("%-34s cached_bytes=%-8llu swept_bytes=%llu\n", when,
                static_cast<unsigned long long>(stats.cached_bytes()),
                static_cast<unsigned long long>(stats.swept_bytes));
  };
  show("after the burst:");
  sweeper.SweepNow();
  show("after SweepNow() #1 (now victims):");
  sweeper.SweepNow();
  show("after SweepNow() #2 (released):");
}

}  // namespace

int main() {
  std::printf("syncpool demo: %u hardware threads; best of %d runs of %ld ops per thread\n",
              std::thread::hardware_concurrency(), kRepetitions, kOpsPerThread);
  const syncpool::Stats stats = syncpool::PoolResource::Default().GetStats();
  std::printf("caches: %s (%s)\n\n", stats.mode, stats.mode_reason);
#ifndef NDEBUG
  std::printf("warning: built without NDEBUG, so syncpool's debug checks are on and the figures\n"
              "         are not representative: build with -c opt\n\n");
#endif
  AllocVersusPool();
  RoundTripTable();
  MemoryComesBack();
  return 0;
}
