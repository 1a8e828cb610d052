// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The per-thread caches when the process turns restartable sequences off from its environment.
// Run by two targets (tests/BUILD.bazel), each starting the process with one setting:
//   - rseq_tunable_off_test: GLIBC_TUNABLES=glibc.pthread.rseq=0, so glibc registers no rseq
//     area (RseqRegistered() is false; its area is still there, unregistered) and CPU ids come
//     from sched_getcpu();
//   - rseq_env_off_test: SYNCPOOL_RSEQ=0, so syncpool leaves the registered area alone.
// Either way RseqUsable() is false, every cache runs per thread (and says why) even when its
// Options allow rseq, and a multi-threaded workload keeps every block accounted for.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/config.h"
#include "absl/base/thread_annotations.h"
#include "gtest/gtest.h"
#include "syncpool/internal/cpu.h"
#include "syncpool/internal/mutex.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "held_set.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::HeldSet;
using ::syncpool::testing::TrackingResource;

#ifdef SYNCPOOL_SANITIZER
constexpr int kIterations = 5000;
#else
constexpr int kIterations = 20000;
#endif

bool TunableOff() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr && std::strstr(tunables, "glibc.pthread.rseq=0") != nullptr;
}

bool EnvOff() {
  const char* env = std::getenv("SYNCPOOL_RSEQ");
  return env != nullptr && std::strcmp(env, "0") == 0;
}

TEST(RseqDisabledTest, StartedWithRseqTurnedOff) {
  ASSERT_TRUE(TunableOff() || EnvOff())
      << "run through //tests:rseq_tunable_off_test or //tests:rseq_env_off_test";
  if (TunableOff()) {
    // glibc read the tunable at startup and registered no area. The sequences still use
    // glibc's area (never the thread control block at offset 0), whose cpu_id then reads
    // RSEQ_CPU_ID_REGISTRATION_FAILED (-2) and fails them.
    EXPECT_FALSE(internal::RseqRegistered());
    EXPECT_FALSE(internal::RseqAvailable());
#if SYNCPOOL_HAVE_GLIBC_RSEQ
    EXPECT_NE(internal::g_rseq_area_offset, 0);
    EXPECT_EQ(internal::RseqCpuId(), -2);
#endif
  }
  EXPECT_FALSE(internal::RseqUsable());
}

TEST(RseqDisabledTest, CachesUsePerThreadCachesAndSayWhy) {
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.allow_rseq = true;  // Allowed, but not usable in this process.
  options.debug_checks = false;  // They would send every call to the locked mode.
  PoolResource resource(options);
  Pool<int> pool([] { return std::make_unique<int>(7); }, nullptr, options);
  EXPECT_FALSE(resource.uses_rseq());
  EXPECT_FALSE(pool.uses_rseq());
  // The per-thread mode, named with its reason in the statistics (and so in SYNCPOOL_STATS=1).
#if SYNCPOOL_RSEQ_FAST_PATH
  const char* why = TunableOff() ? "glibc did not register rseq" : "SYNCPOOL_RSEQ=0";
#elif defined(ABSL_HAVE_THREAD_SANITIZER)
  const char* why = "ThreadSanitizer";  // The first reason: no sequences are compiled in.
#else
  const char* why = "not x86-64 Linux with glibc";
#endif
  for (const Stats& s : {resource.GetStats(), pool.GetStats()}) {
    EXPECT_STREQ(s.mode, "per-thread");
    EXPECT_STREQ(s.mode_reason, why);
    EXPECT_NE(s.DebugString().find(std::string("caches: per-thread (") + why + ")"),
              std::string::npos)
        << s.DebugString();
  }
  // Their inline paths serve this thread from its own cache: a deallocate then an allocate of
  // the same size is a hit on the block just given back.
  void* p = resource.allocate(100);
  resource.deallocate(p, 100);
  const uint64_t hits = resource.GetStats().hits;
  EXPECT_EQ(resource.allocate(100), p);
  EXPECT_EQ(resource.GetStats().hits, hits + 1);
  resource.deallocate(p, 100);
  EXPECT_EQ(resource.GetStats().caches, 1u);
  // A cache that asks for the per-CPU mode gets the locked one here.
  Options per_cpu = options;
  per_cpu.mode = CacheMode::kPerCpu;
  PoolResource locked(per_cpu);
  EXPECT_STREQ(locked.GetStats().mode, "locked per-CPU");
  // CPU ids still come out in range, from sched_getcpu() where glibc has no area.
  const int cpu = internal::CurrentCpu();
  EXPECT_GE(cpu, 0);
  EXPECT_LT(cpu, internal::NumCpus());
}

// An 8-word object that counts constructions and destructions.
struct Obj {
  static inline std::atomic<uint64_t> constructed{0};
  static inline std::atomic<uint64_t> destroyed{0};
  Obj() { constructed.fetch_add(1, std::memory_order_relaxed); }
  ~Obj() { destroyed.fetch_add(1, std::memory_order_relaxed); }
  uint64_t words[8] = {};
};

uint64_t Word(uint64_t tag, size_t i) { return tag * 0x9e3779b97f4a7c15 + i; }


TEST(RseqDisabledTest, ThreadsKeepEveryBlockAccountedFor) {
  Obj::constructed = 0;
  Obj::destroyed = 0;
  TrackingResource upstream;
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.debug_checks = false;
  options.max_blocks_per_class = 4;  // Small caches: spills and shared moves happen.
  auto resource = std::make_unique<PoolResource>(options, &upstream);
  auto pool = std::make_unique<Pool<Obj>>([] { return std::make_unique<Obj>(); }, nullptr,
                                          options);
  ASSERT_FALSE(resource->uses_rseq());
  ASSERT_FALSE(pool->uses_rseq());

  HeldSet held;
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> gets{0};
  std::atomic<uint64_t> allocations{0};
  const int num_threads = 2 * static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      constexpr size_t kBytes[] = {16, 128, 2048};
      for (int i = 0; i < kIterations; ++i) {
        const uint64_t tag = (uint64_t{static_cast<uint32_t>(t)} << 32) | static_cast<uint32_t>(i);
        const size_t n = 1 + rng() % 4;  // A small window: taken together, given back together.
        std::vector<Pool<Obj>::Handle> objects;
        std::vector<std::pair<uint64_t*, size_t>> blocks;
        for (size_t k = 0; k < n; ++k) {
          objects.push_back(pool->Get());
          const size_t bytes = kBytes[rng() % std::size(kBytes)];
          blocks.emplace_back(static_cast<uint64_t*>(resource->allocate(bytes)), bytes);
          if (!held.Insert(objects.back().get()) || !held.Insert(blocks.back().first)) {
            failures.fetch_add(1);
            ADD_FAILURE() << "a held pointer was handed out again";
            objects.back().release().release();  // Leave it to its other holder.
            blocks.pop_back();
            return;
          }
          for (size_t w = 0; w < 8; ++w) objects.back()->words[w] = Word(tag + k, w);
          for (size_t w = 0; w < bytes / 8; ++w) blocks.back().first[w] = Word(tag + k, w);
        }
        gets.fetch_add(n, std::memory_order_relaxed);
        allocations.fetch_add(n, std::memory_order_relaxed);
        for (size_t k = 0; k < n; ++k) {
          bool intact = true;
          for (size_t w = 0; w < 8; ++w) intact &= objects[k]->words[w] == Word(tag + k, w);
          for (size_t w = 0; w < blocks[k].second / 8; ++w) {
            intact &= blocks[k].first[w] == Word(tag + k, w);
          }
          if (!intact) {
            failures.fetch_add(1);
            ADD_FAILURE() << "pattern overwritten while held";
          }
          EXPECT_TRUE(held.Erase(objects[k].get()));
          EXPECT_TRUE(held.Erase(blocks[k].first));
          resource->deallocate(blocks[k].first, blocks[k].second);
        }
        objects.clear();
        if (i % 1024 == 0) sweeper.SweepNow();  // Sweeps race the other threads.
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0u);
  EXPECT_EQ(held.size(), 0u);

  // In the locked mode the statistics are exact.
  const Stats ps = pool->GetStats();
  EXPECT_EQ(ps.hits + ps.misses, gets.load()) << ps.DebugString();
  EXPECT_EQ(ps.misses, Obj::constructed.load()) << ps.DebugString();
  EXPECT_EQ(Obj::constructed.load(), Obj::destroyed.load() + ps.cached_blocks());
  const Stats rs = resource->GetStats();
  EXPECT_EQ(rs.hits + rs.misses, allocations.load()) << rs.DebugString();
  EXPECT_EQ(upstream.allocations(), rs.misses + rs.refilled) << rs.DebugString();
  EXPECT_EQ(upstream.live_blocks(), rs.cached_blocks()) << rs.DebugString();
  EXPECT_GT(rs.hits, 0u);

  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(pool->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(resource->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(Obj::constructed.load(), Obj::destroyed.load());
  EXPECT_EQ(upstream.live_blocks(), 0u);
  pool.reset();
  resource.reset();
  EXPECT_EQ(upstream.live_bytes(), 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
}

}  // namespace
}  // namespace syncpool
