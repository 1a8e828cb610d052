// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Per-CPU caches that grow to the working set and shrink back (options.h, cpu_cache.h): a
// PoolResource over a TrackingResource, its epochs run by Sweeper::Tick() on an injected clock
// (no sleeping), on a fake CPU.

#include <chrono>
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "syncpool/testing/fake_cpu.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::std::chrono::milliseconds;
using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

class NoPressure final : public PressureSource {
 public:
  bool UnderPressure() override { return false; }
};

class GrowthTest : public ::testing::TestWithParam<bool> {
 protected:
  GrowthTest() {
    Sweeper::Options options = Sweeper::Options::Manual(milliseconds(100));
    options.pressure = &pressure_;
    options.clock = [this] { return now_; };
    sweeper_.emplace(options);
  }

  // Each test's resources are gone by now: they gave every block back, each as it was taken.
  void TearDown() override {
    EXPECT_EQ(upstream_.live_blocks(), 0u);
    EXPECT_TRUE(upstream_.errors().empty()) << upstream_.errors().front();
  }

  // A resource whose caches start with room for 16 blocks per class and may grow to 4096.
  Options ResourceOptions() {
    Options options;
    options.sweeper = &*sweeper_;
    options.initial_blocks_per_class = 16;
    options.max_blocks_per_class = 4096;
    options.per_cpu_class_bytes = 32 << 20;
    options.refill_bytes = 0;  // One block per miss: the tests count misses exactly.
    options.allow_rseq = GetParam();
    options.debug_checks = false;
    return options;
  }

  // One interval later, the epoch Tick() runs.
  void NextEpoch() {
    now_ += milliseconds(100);
    ASSERT_TRUE(sweeper_->Tick());
  }

  // Allocates `n` blocks of `bytes` and frees them all: a working set of n blocks.
  static void Round(PoolResource& r, size_t n, size_t bytes) {
    std::vector<void*> blocks;
    for (size_t i = 0; i < n; ++i) blocks.push_back(r.allocate(bytes));
    for (void* p : blocks) r.deallocate(p, bytes);
  }

  NoPressure pressure_;
  std::chrono::steady_clock::time_point now_{};
  std::optional<Sweeper> sweeper_;
  TrackingResource upstream_;
};

TEST_P(GrowthTest, ACacheGrowsToItsWorkingSetAndGivesItBackWhenTheWorkStops) {
  ScopedFakeCpu cpu(0);
  PoolResource r(ResourceOptions(), &upstream_);
  constexpr size_t kWorkingSet = 1000;  // Far beyond the 16 blocks the cache starts with.
  Round(r, kWorkingSet, 64);
  Stats s = r.GetStats();
  EXPECT_EQ(s.misses, kWorkingSet);
  EXPECT_EQ(s.cached_blocks(), kWorkingSet);  // All of it stayed on the CPU:
  EXPECT_EQ(s.spills, 0u);
  EXPECT_EQ(s.shared_moves, 0u);
  EXPECT_EQ(s.grows, 6u);  // 16 -> 32 -> 64 -> 128 -> 256 -> 512 -> 1024.

  // Warm, every allocation hits, across epochs that see the work go on.
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int round = 0; round < 3; ++round) Round(r, kWorkingSet, 64);
    NextEpoch();
  }
  s = r.GetStats();
  EXPECT_EQ(s.misses, kWorkingSet);
  EXPECT_EQ(s.hits, 9 * kWorkingSet);
  EXPECT_EQ(s.grows, 6u);
  EXPECT_EQ(s.cached_blocks(), kWorkingSet);
  EXPECT_EQ(upstream_.live_blocks(), kWorkingSet);

  // The work stops: two epochs release the blocks (the capacity stays at what they fill until
  // they are gone); then the epochs take an empty cache back to where it started.
  for (int epoch = 0; epoch < 2; ++epoch) NextEpoch();
  EXPECT_EQ(r.GetStats().cached_blocks(), 0u);
  for (int epoch = 0; epoch < 6; ++epoch) NextEpoch();
  s = r.GetStats();
  EXPECT_EQ(s.cached_blocks(), 0u);
  EXPECT_EQ(s.swept_blocks, kWorkingSet);
  EXPECT_EQ(upstream_.live_blocks(), 0u);
  // Back where it started: 16 blocks fit, the 17th grows it again.
  Round(r, 16, 64);
  EXPECT_EQ(r.GetStats().grows, 6u);
  Round(r, 17, 64);
  EXPECT_EQ(r.GetStats().grows, 7u);
}

TEST_P(GrowthTest, ACacheThatKeepsOverflowingKeepsItsCapacity) {
  ScopedFakeCpu cpu(0);
  PoolResource r(ResourceOptions(), &upstream_);
  Round(r, 200, 64);  // Grows to 256.
  const uint64_t grows = r.GetStats().grows;
  for (int epoch = 0; epoch < 4; ++epoch) {
    // Each epoch the working set comes back whole: the epoch keeps it and the capacity.
    Round(r, 200, 64);
    NextEpoch();
  }
  Round(r, 200, 64);
  const Stats s = r.GetStats();
  EXPECT_EQ(s.grows, grows);
  EXPECT_EQ(s.misses, 200u);
  EXPECT_EQ(s.spills, 0u);
}

TEST_P(GrowthTest, ByteBudgetsBoundGrowth) {
  ScopedFakeCpu cpu(0);
  Options options = ResourceOptions();
  options.max_cached_bytes = 64 * 1024;  // 1024 blocks of 64 bytes, every CPU and class.
  PoolResource r(options, &upstream_);
  Round(r, 4000, 64);
  Stats s = r.GetStats();
  EXPECT_LE(s.cached_bytes(), 64u * 1024u);
  EXPECT_GT(s.spills + s.over_budget_blocks, 0u);
  NextEpoch();
  s = r.GetStats();
  EXPECT_LE(s.cached_bytes(), 64u * 1024u);
  EXPECT_EQ(upstream_.live_blocks(), s.cached_blocks());
}

TEST_P(GrowthTest, AProcessBudgetBoundsGrowth) {
  ScopedFakeCpu cpu(0);
  SetProcessCacheLimit(32 * 1024);
  PoolResource r(ResourceOptions(), &upstream_);
  Round(r, 4000, 64);
  const Stats s = r.GetStats();
  SetProcessCacheLimit(0);
  EXPECT_LE(s.primary_bytes, 2u * 32u * 1024u);  // The CPU's stack stopped growing.
  EXPECT_GT(s.spills + s.over_budget_blocks, 0u);
}

TEST_P(GrowthTest, APerCpuByteLimitBoundsGrowth) {
  ScopedFakeCpu cpu(0);
  Options options = ResourceOptions();
  options.max_block_size = 1024;  // Few classes: their starting room is about 100 KiB.
  options.per_cpu_bytes = 0;      // No bound: 4000 blocks of 64 bytes stay on the CPU.
  {
    PoolResource r(options, &upstream_);
    Round(r, 4000, 64);
    const Stats s = r.GetStats();
    EXPECT_EQ(s.primary_blocks, 4000u);
    EXPECT_EQ(s.grows, 8u);  // 16 -> 4096.
    EXPECT_EQ(s.shared_moves + s.spills, 0u);
  }
  // 256 KiB for all classes: the 64-byte class stops at 2048 blocks (128 KiB); room for 4096
  // would take the CPU past the bound.
  options.per_cpu_bytes = 256 * 1024;
  PoolResource r(options, &upstream_);
  Round(r, 4000, 64);
  const Stats s = r.GetStats();
  EXPECT_EQ(s.grows, 7u);  // 16 -> 2048.
  EXPECT_LT(s.primary_blocks, 4000u);
  EXPECT_GT(s.shared_moves + s.spills, 0u);
  EXPECT_EQ(upstream_.live_blocks(), s.cached_blocks());
}

TEST_P(GrowthTest, APoolOfObjectsGrowsToo) {
  ScopedFakeCpu cpu(0);
  Options options = ResourceOptions();
  Pool<int> pool([] { return std::make_unique<int>(0); }, nullptr, options);
  std::vector<Pool<int>::Handle> held;
  for (int i = 0; i < 500; ++i) held.push_back(pool.Get());
  held.clear();
  Stats s = pool.GetStats();
  EXPECT_EQ(s.cached_blocks(), 500u);
  EXPECT_EQ(s.spills, 0u);
  for (int i = 0; i < 500; ++i) held.push_back(pool.Get());
  EXPECT_EQ(pool.GetStats().hits, 500u);
  held.clear();
  for (int epoch = 0; epoch < 3; ++epoch) NextEpoch();
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
}

INSTANTIATE_TEST_SUITE_P(BothPaths, GrowthTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Rseq" : "Locked";
                         });

}  // namespace
}  // namespace syncpool

namespace syncpool {
namespace {

// Threads allocate a burst of blocks of 16 B to 1 MiB (freeing half of them at random as they
// go, on whatever CPUs they run), free everything, and the epochs run: every block is either
// cached or back upstream at every step, and two idle epochs leave nothing.
// With `background_sweeps`, a sweeper thread runs an epoch every millisecond meanwhile, and the exact
// checks wait until it is stopped (a sweep holds the blocks it took until it releases them).
void BurstAndSweeps(bool background_sweeps) {
  TrackingResource upstream;
  Sweeper sweeper(Sweeper::Options::Manual());
  Sweeper background(Sweeper::Options::Every(std::chrono::milliseconds(1)));
  const auto GetBackground = [background_sweeps] { return background_sweeps; };
  Options options;
  options.sweeper = GetBackground() ? &background : &sweeper;
  options.max_block_size = 1 << 20;
  options.per_cpu_class_bytes = 32 << 20;  // Growth on.
  options.max_blocks_per_class = 1 << 20;
  options.debug_checks = false;
  {
    PoolResource r(options, &upstream);
    constexpr int kThreads = 4;
    std::vector<std::vector<std::pair<void*, size_t>>> live(kThreads);
    for (int round = 0; round < 3; ++round) {
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(t + 1 + 7 * round);
          auto next = [&x] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            return x;
          };
          auto& mine = live[static_cast<size_t>(t)];
          for (int i = 0; i < 3000; ++i) {
            const size_t bytes = size_t{16} << (next() % 17);
            const size_t size = bytes + next() % bytes;
            const size_t n = std::min<size_t>(size, 1 << 20);
            mine.push_back({r.allocate(n, 8), n});
            if ((next() & 1) != 0) {
              const size_t v = next() % mine.size();
              r.deallocate(mine[v].first, mine[v].second, 8);
              mine[v] = mine.back();
              mine.pop_back();
            }
          }
          for (auto& [p, n] : mine) r.deallocate(p, n, 8);
          mine.clear();
        });
      }
      for (std::thread& th : threads) th.join();
      if (GetBackground()) continue;  // A sweep may hold blocks it took and not released yet.
      Stats s = r.GetStats();
      EXPECT_EQ(upstream.live_blocks(), s.cached_blocks()) << s.DebugString();
      sweeper.SweepNow();
      s = r.GetStats();
      EXPECT_EQ(upstream.live_blocks(), s.cached_blocks()) << s.DebugString();
    }
    Sweeper& mine = GetBackground() ? background : sweeper;
    mine.Stop();  // Joins the thread: no sweep is under way from here on.
    {
      const Stats s = r.GetStats();
      EXPECT_EQ(upstream.live_blocks(), s.cached_blocks()) << s.DebugString();
    }
    mine.SweepNow();
    mine.SweepNow();
    const Stats s = r.GetStats();
    EXPECT_EQ(s.cached_blocks(), 0u) << s.DebugString();
    EXPECT_EQ(upstream.live_blocks(), 0u) << s.DebugString();
  }
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
}

TEST(GrowthBurstTest, EveryBlockOfABurstIsCachedOrReleased) { BurstAndSweeps(false); }

TEST(GrowthBurstTest, EveryBlockIsCachedOrReleasedWhileSweepsRun) { BurstAndSweeps(true); }

}  // namespace
}  // namespace syncpool
