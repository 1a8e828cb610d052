// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/pool_bench.cc
// -----------------------------------------------------------------------------
//
// syncpool's benchmark suite (Google Benchmark):
//
//   bazel run -c opt //bench:pool_bench
//
//   BM_Seed_Alloc, BM_Seed_Pool   the Alloc-vs-Pool benchmark of Go's sync.Pool, in C++: new and
//                                 delete of a 1 KiB buffer against Pool<Buf> Get and Put.
//   BM_Buffer_Alloc/<n>, BM_Buffer_Pool/<n>
//                                 Go's bytes.Buffer idiom: a std::string written with n bytes
//                                 and dropped, against Pool<std::string> Get, write, Put (the
//                                 reset hook clears it and keeps its capacity; the pool counts
//                                 the bytes each string owns).
//   BM_RoundTrip/<resource>/<n>   one allocate and one deallocate of n bytes through a
//                                 std::pmr::memory_resource* (or, for syncpool_allocator,
//                                 through PoolAllocator<char>, without the virtual call).
//   BM_Churn/<resource>           building and dropping a std::pmr::vector of 64
//                                 std::pmr::strings of 100 characters.
//   BM_PerCpu_PopPush             the per-CPU cache alone (BlockCache Get and Put of one class),
//                                 to show what the layers above it add.
//   BM_Miss/<upstream|syncpool>/<n>
//                                 allocations that all miss: syncpool's allocate of n bytes with
//                                 every cache empty (its upstream is mimalloc), against the same
//                                 allocate straight from mimalloc. Between batches of 1024, with
//                                 the timer paused, everything is given back and the resource
//                                 trimmed. One thread. upstream_aligned64: mimalloc asked for the
//                                 same size and alignment (64) as syncpool asks on a miss.
//   BM_RoundTrip/interface_floor/1024
//                                 the two virtual calls of a round trip and nothing else (a
//                                 resource that hands out one static block): what any
//                                 memory_resource pays before it does any work.
//
// Thread counts: 1 and 2 by default (this project's CI machine class has two cores);
// --syncpool_threads=1,2,4,8,16 (a comma-separated list, before the Google Benchmark flags)
// replaces them, for machines with more cores.
//
// The names are stable: results are compared across versions by name. Every benchmark uses
// UseRealTime(), so with several threads a figure is the wall time divided by the iterations of
// all threads. Resources are shared by the threads of a benchmark, and each thread warms its
// CPU's cache up before timing, so the pools are measured in their steady state.

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "bench/bench_util.h"
#include "src/block_cache.h"
#include "syncpool/mimalloc_resource.h"
#include "syncpool/pool.h"
#include "syncpool/pool_allocator.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace {

using ::syncpool::bench::SetThreads;

// Round trips done by each thread before timing starts.
constexpr int kWarmupRoundTrips = 256;

// The seed's buffer: 1 KiB.
struct Buf {
  char data[1024];
};

// -----------------------------------------------------------------------------
// The seed's benchmark
// -----------------------------------------------------------------------------

void BM_Seed_Alloc(benchmark::State& state) {
  for (auto _ : state) {
    Buf* buf = new Buf;
    benchmark::DoNotOptimize(buf);
    benchmark::ClobberMemory();
    delete buf;
  }
}

void BM_Seed_Pool(benchmark::State& state) {
  // Shared by every thread and run; never destroyed, so no thread can outlive it.
  static auto* const pool = new syncpool::Pool<Buf>([] { return std::make_unique<Buf>(); });
  for (int i = 0; i < kWarmupRoundTrips; ++i) pool->Get();
  for (auto _ : state) {
    auto buf = pool->Get();
    benchmark::DoNotOptimize(buf.get());
    benchmark::ClobberMemory();
  }  // ~Handle puts the buffer back.
}

// -----------------------------------------------------------------------------
// Pools of buffers
// -----------------------------------------------------------------------------

void BM_Buffer_Alloc(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    std::string buf;
    buf.append(n, 'x');
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
}

void BM_Buffer_Pool(benchmark::State& state) {
  // Shared by every thread and run; never destroyed, so no thread can outlive it.
  static auto* const pool = new syncpool::Pool<std::string>(
      [] { return std::make_unique<std::string>(); }, [](std::string& s) { s.clear(); });
  const auto n = static_cast<size_t>(state.range(0));
  for (int i = 0; i < kWarmupRoundTrips; ++i) pool->Get()->append(n, 'x');
  for (auto _ : state) {
    auto buf = pool->Get();
    buf->append(n, 'x');
    benchmark::DoNotOptimize(buf->data());
    benchmark::ClobberMemory();
  }
}

// -----------------------------------------------------------------------------
// Memory resources
// -----------------------------------------------------------------------------

// A resource under comparison. `get` returns it (created on first use and never destroyed, so
// every thread of a benchmark shares it), or nullptr when it is not available.
struct NamedResource {
  const char* name;
  std::pmr::memory_resource* (*get)();
  bool thread_safe;
};

std::pmr::memory_resource* SyncPool() { return &syncpool::PoolResource::Default(); }
// The same resource with its caches forced into the locked per-CPU mode
// (Options::allow_rseq = false).
std::pmr::memory_resource* SyncPoolLocked() {
  static auto* const resource = [] {
    syncpool::Options options;
    options.allow_rseq = false;
    return new syncpool::PoolResource(options);
  }();
  return resource;
}
std::pmr::memory_resource* NewDelete() { return std::pmr::new_delete_resource(); }
std::pmr::memory_resource* SynchronizedPool() {
  static auto* const resource = new std::pmr::synchronized_pool_resource();
  return resource;
}
std::pmr::memory_resource* UnsynchronizedPool() {
  static auto* const resource = new std::pmr::unsynchronized_pool_resource();
  return resource;
}
std::pmr::memory_resource* Mimalloc() { return syncpool::MimallocResource::Get(); }

constexpr NamedResource kResources[] = {
    {"syncpool", &SyncPool, true},
    {"syncpool_locked", &SyncPoolLocked, true},
    {"new_delete", &NewDelete, true},
    {"synchronized_pool", &SynchronizedPool, true},
    {"unsynchronized_pool", &UnsynchronizedPool, false},
    {"mimalloc", &Mimalloc, true},
};

constexpr size_t kRoundTripBytes[] = {64, 1024, 65536};

// Returns the resource, or skips the benchmark (on this thread) and returns nullptr.
std::pmr::memory_resource* GetOrSkip(benchmark::State& state, const NamedResource& resource) {
  std::pmr::memory_resource* mr = resource.get();
  if (mr == nullptr) state.SkipWithError("resource not available (libmimalloc.so.2 not loaded?)");
  return mr;
}

// -----------------------------------------------------------------------------
// BM_RoundTrip
// -----------------------------------------------------------------------------

void RoundTrip(benchmark::State& state, const NamedResource& resource, size_t bytes) {
  std::pmr::memory_resource* mr = GetOrSkip(state, resource);
  if (mr == nullptr) return;
  for (int i = 0; i < kWarmupRoundTrips; ++i) mr->deallocate(mr->allocate(bytes), bytes);
  for (auto _ : state) {
    void* p = mr->allocate(bytes);
    benchmark::DoNotOptimize(p);
    mr->deallocate(p, bytes);
  }
}

void RoundTripAllocator(benchmark::State& state, size_t bytes) {
  syncpool::PoolAllocator<char> alloc;  // PoolResource::Default(), as "syncpool" above.
  for (int i = 0; i < kWarmupRoundTrips; ++i) alloc.deallocate(alloc.allocate(bytes), bytes);
  for (auto _ : state) {
    char* p = alloc.allocate(bytes);
    benchmark::DoNotOptimize(p);
    alloc.deallocate(p, bytes);
  }
}

// Hands every caller the same static block and takes nothing back: the cost of the interface.
// Only for BM_RoundTrip, whose callers never write to the block.
class InterfaceFloor final : public std::pmr::memory_resource {
  void* do_allocate(size_t bytes, size_t /*alignment*/) override {
    if (bytes > sizeof(block_)) throw std::bad_alloc();
    return block_;
  }
  void do_deallocate(void* /*p*/, size_t /*bytes*/, size_t /*alignment*/) override {}
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
  alignas(64) char block_[1024];
};
std::pmr::memory_resource* Floor() {
  static auto* const resource = new InterfaceFloor();
  return resource;
}

void RegisterRoundTrips() {
  SetThreads(benchmark::RegisterBenchmark("BM_RoundTrip/interface_floor/1024", &RoundTrip,
                                          NamedResource{"interface_floor", &Floor, true}, 1024),
             /*thread_safe=*/true);
  for (const NamedResource& resource : kResources) {
    for (size_t bytes : kRoundTripBytes) {
      const std::string name =
          std::string("BM_RoundTrip/") + resource.name + "/" + std::to_string(bytes);
      SetThreads(benchmark::RegisterBenchmark(name.c_str(), &RoundTrip, resource, bytes),
                 resource.thread_safe);
    }
  }
  for (size_t bytes : kRoundTripBytes) {
    const std::string name = "BM_RoundTrip/syncpool_allocator/" + std::to_string(bytes);
    SetThreads(benchmark::RegisterBenchmark(name.c_str(), &RoundTripAllocator, bytes),
               /*thread_safe=*/true);
  }
}

// -----------------------------------------------------------------------------
// BM_Miss
// -----------------------------------------------------------------------------

constexpr int kMissBatch = 1024;

// Allocates from `mr` in batches of kMissBatch, timed; gives each batch back and calls
// `empty()` with the timer paused.
template <typename Empty>
void Misses(benchmark::State& state, std::pmr::memory_resource* mr, size_t bytes, Empty empty) {
  std::vector<void*> blocks;
  blocks.reserve(kMissBatch);
  for (auto _ : state) {
    blocks.push_back(mr->allocate(bytes));
    if (blocks.size() == kMissBatch) {
      state.PauseTiming();
      for (void* p : blocks) mr->deallocate(p, bytes);
      blocks.clear();
      empty();
      state.ResumeTiming();
    }
  }
  for (void* p : blocks) mr->deallocate(p, bytes);
  empty();
}

void MissUpstream(benchmark::State& state, size_t bytes) {
  std::pmr::memory_resource* mr = syncpool::MimallocResource::Get();
  if (mr == nullptr) return state.SkipWithError("libmimalloc.so.2 not loaded");
  Misses(state, mr, bytes, [] {});
}

// The call syncpool makes on a miss: the class's size, aligned to 64 (its largest power-of-two
// divisor, capped at 64), so that requests aligned up to 64 share the class.
class Aligned64 final : public std::pmr::memory_resource {
 public:
  explicit Aligned64(std::pmr::memory_resource* upstream) : upstream_(upstream) {}

 private:
  void* do_allocate(size_t bytes, size_t /*alignment*/) override {
    return upstream_->allocate(bytes, 64);
  }
  void do_deallocate(void* p, size_t bytes, size_t /*alignment*/) override {
    upstream_->deallocate(p, bytes, 64);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
  std::pmr::memory_resource* const upstream_;
};

void MissUpstreamAligned(benchmark::State& state, size_t bytes) {
  std::pmr::memory_resource* mr = syncpool::MimallocResource::Get();
  if (mr == nullptr) return state.SkipWithError("libmimalloc.so.2 not loaded");
  Aligned64 aligned(mr);
  Misses(state, &aligned, bytes, [] {});
}

void MissSyncPool(benchmark::State& state, size_t bytes) {
  std::pmr::memory_resource* upstream = syncpool::MimallocResource::Get();
  if (upstream == nullptr) return state.SkipWithError("libmimalloc.so.2 not loaded");
  static auto* const sweeper = new syncpool::Sweeper(syncpool::Sweeper::Options::Manual());
  syncpool::Options options;
  options.sweeper = sweeper;
  syncpool::PoolResource pool(options, upstream);
  const syncpool::Stats before = pool.GetStats();
  Misses(state, &pool, bytes, [&pool] { pool.Trim(); });
  const syncpool::Stats after = pool.GetStats();
  state.SetLabel("misses per allocation: " +
                 std::to_string(static_cast<double>(after.misses - before.misses) /
                                static_cast<double>(state.iterations())));
}

void RegisterMisses() {
  for (size_t bytes : {size_t{64}, size_t{1024}}) {
    const std::string suffix = "/" + std::to_string(bytes);
    benchmark::RegisterBenchmark(("BM_Miss/upstream" + suffix).c_str(), &MissUpstream, bytes)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_Miss/upstream_aligned64" + suffix).c_str(),
                                 &MissUpstreamAligned, bytes)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_Miss/syncpool" + suffix).c_str(), &MissSyncPool, bytes)
        ->UseRealTime();
  }
}

// -----------------------------------------------------------------------------
// BM_Churn
// -----------------------------------------------------------------------------

constexpr int kChurnStrings = 64;
constexpr size_t kChurnStringLength = 100;

void BuildAndDrop(std::pmr::memory_resource* mr) {
  std::pmr::vector<std::pmr::string> strings(mr);
  for (int i = 0; i < kChurnStrings; ++i) strings.emplace_back(kChurnStringLength, 'x');
  benchmark::DoNotOptimize(strings.data());
  benchmark::ClobberMemory();
}

// For a syncpool resource, reports what its caches did during the timed loop, per iteration of
// all threads together: `misses` (upstream calls), `grows` (per-CPU capacity
// doublings: a cache growing to the working set), `spills` (puts into a full cache)
// and `shared_moves` (blocks a full CPU cache moved to the shared layer for other CPUs).
// Thread 0 reports them in the run's label (counters would have to exist for every resource:
// the CSV reporter refuses runs whose counters differ); the figures are deltas of the shared
// resource's Stats.
class CacheCounters {
 public:
  explicit CacheCounters(std::pmr::memory_resource* mr)
      : pool_(dynamic_cast<syncpool::PoolResource*>(mr)),
        before_(pool_ != nullptr ? pool_->GetStats() : syncpool::Stats()) {}

  void Report(benchmark::State& state) const {
    if (pool_ == nullptr || state.thread_index() != 0) return;
    const syncpool::Stats after = pool_->GetStats();
    const double iterations = static_cast<double>(state.iterations()) * state.threads();
    char label[160];
    std::snprintf(label, sizeof(label),
                  "per iteration: misses=%.4g grows=%.4g spills=%.4g shared_moves=%.4g",
                  static_cast<double>(after.misses - before_.misses) / iterations,
                  static_cast<double>(after.grows - before_.grows) / iterations,
                  static_cast<double>(after.spills - before_.spills) / iterations,
                  static_cast<double>(after.shared_moves - before_.shared_moves) / iterations);
    state.SetLabel(label);
  }

 private:
  syncpool::PoolResource* const pool_;
  const syncpool::Stats before_;
};

void Churn(benchmark::State& state, const NamedResource& resource) {
  std::pmr::memory_resource* mr = GetOrSkip(state, resource);
  if (mr == nullptr) return;
  for (int i = 0; i < kWarmupRoundTrips / 16; ++i) BuildAndDrop(mr);
  const CacheCounters counters(mr);
  for (auto _ : state) BuildAndDrop(mr);
  counters.Report(state);
}

void RegisterChurns() {
  for (const NamedResource& resource : kResources) {
    const std::string name = std::string("BM_Churn/") + resource.name;
    SetThreads(benchmark::RegisterBenchmark(name.c_str(), &Churn, resource),
               resource.thread_safe);
  }
}

// -----------------------------------------------------------------------------
// BM_PerCpu_PopPush
// -----------------------------------------------------------------------------

constexpr size_t kPerCpuBlockBytes = 64;

// Blocks come from operator new; a spilled or swept block goes back to operator delete.
class DeletingReleaser final : public syncpool::internal::BlockReleaser {
 public:
  void Release(size_t /*cls*/, void* const* blocks, size_t n) override {
    for (size_t i = 0; i < n; ++i) ::operator delete(blocks[i]);
  }
};

syncpool::Sweeper::Options ManualSweeps() {
  syncpool::Sweeper::Options options;
  options.background = false;  // No epoch interrupts the measurement.
  return options;
}

// One size class, 128 blocks per CPU and generation, swept only on demand (never, here).
struct PerCpuFixture {
  syncpool::Sweeper sweeper{ManualSweeps()};
  DeletingReleaser releaser;
  syncpool::internal::BlockCache cache{{kPerCpuBlockBytes}, {128}, &releaser, &sweeper};
};

void BM_PerCpu_PopPush(benchmark::State& state) {
  static auto* const fixture = new PerCpuFixture();
  syncpool::internal::BlockCache& cache = fixture->cache;
  auto get_or_new = [&cache] {
    void* block = cache.Get(0);
    return block != nullptr ? block : ::operator new(kPerCpuBlockBytes);
  };
  for (int i = 0; i < kWarmupRoundTrips; ++i) cache.Put(0, get_or_new());
  for (auto _ : state) {
    void* block = get_or_new();
    benchmark::DoNotOptimize(block);
    cache.Put(0, block);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!syncpool::bench::ParseThreadCounts("pool_bench", argc, argv)) return 2;
  SetThreads(benchmark::RegisterBenchmark("BM_Seed_Alloc", &BM_Seed_Alloc), true);
  SetThreads(benchmark::RegisterBenchmark("BM_Seed_Pool", &BM_Seed_Pool), true);
  for (const int64_t bytes : {1024, 65536}) {
    SetThreads(benchmark::RegisterBenchmark("BM_Buffer_Alloc", &BM_Buffer_Alloc)->Arg(bytes),
               true);
    SetThreads(benchmark::RegisterBenchmark("BM_Buffer_Pool", &BM_Buffer_Pool)->Arg(bytes),
               true);
  }
  SetThreads(benchmark::RegisterBenchmark("BM_PerCpu_PopPush", &BM_PerCpu_PopPush), true);
  RegisterRoundTrips();
  RegisterMisses();
  RegisterChurns();
  syncpool::bench::AddBuildContext();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
