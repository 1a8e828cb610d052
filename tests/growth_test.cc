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
#include "src/fake_cpu.h"
#include "tests/cpu_affinity.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::std::chrono::milliseconds;
using ::syncpool::testing::ScopedAffinity;
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

// Blocks of up to 4 KiB live in spans (src/spans.h): their per-CPU caches stop at 64 KiB per
// class and the upstream sees spans, not blocks. The growth and shrinking of the caches, and the
// one-allocation-per-block accounting upstream that this test relies on, hold for the larger
// classes, so it uses 8 KiB blocks (within the default max_block_size). A class of 8 KiB starts
// with room for min(16, 64 KiB / 8 KiB) = 8 blocks.
constexpr size_t kLargeBlock = 8192;
constexpr size_t kLargeStart = 8;

TEST_P(GrowthTest, ACacheGrowsToItsWorkingSetAndGivesItBackWhenTheWorkStops) {
  ScopedFakeCpu cpu(0);
  PoolResource r(ResourceOptions(), &upstream_);
  constexpr size_t kWorkingSet = 1000;  // Far beyond the 8 blocks the cache starts with.
  Round(r, kWorkingSet, kLargeBlock);
  Stats s = r.GetStats();
  EXPECT_EQ(s.misses, kWorkingSet);
  EXPECT_EQ(s.cached_blocks(), kWorkingSet);  // All of it stayed on the CPU:
  EXPECT_EQ(s.spills, 0u);
  EXPECT_EQ(s.shared_moves, 0u);
  EXPECT_EQ(s.grows, 7u);  // 8 -> 16 -> 32 -> 64 -> 128 -> 256 -> 512 -> 1024.
  EXPECT_EQ(s.span_bytes, 0u);  // No class of up to 4 KiB was used.

  // Warm, every allocation hits, across epochs that see the work go on.
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int round = 0; round < 3; ++round) Round(r, kWorkingSet, kLargeBlock);
    NextEpoch();
  }
  s = r.GetStats();
  EXPECT_EQ(s.misses, kWorkingSet);
  EXPECT_EQ(s.hits, 9 * kWorkingSet);
  EXPECT_EQ(s.grows, 7u);
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
  // Back where it started: 8 blocks fit, the 9th grows it again.
  Round(r, kLargeStart, kLargeBlock);
  EXPECT_EQ(r.GetStats().grows, 7u);
  Round(r, kLargeStart + 1, kLargeBlock);
  EXPECT_EQ(r.GetStats().grows, 8u);
}

// The same growth through the restartable sequences (a fake CPU closes them, so the test above
// runs the slow paths): the thread is pinned to one CPU instead. A class of 5 KiB starts with
// room for min(16, 64 KiB / 5 KiB) = 12 blocks, so its doublings (12, 24, ..., 192, 384) step
// over the slot arrays' first reserve of 256: a doubling from below the reserve to past it must
// move the arrays too. (It did not: the rseq caches of such classes stopped at 192 blocks and
// spilled the rest.)
TEST_P(GrowthTest, ACacheGrowsPastItsReserveFromACapacityBelowIt) {
  ScopedAffinity restore;
  const std::vector<int> cpus = testing::AllowedCpus();
  ASSERT_FALSE(cpus.empty());
  ASSERT_TRUE(testing::PinTo(cpus.front()));
  PoolResource r(ResourceOptions(), &upstream_);
  constexpr size_t kBlock = 5120;
  constexpr size_t kWorkingSet = 1000;
  Round(r, kWorkingSet, kBlock);
  const Stats s = r.GetStats();
  EXPECT_EQ(s.cached_blocks(), kWorkingSet) << s.DebugString();
  EXPECT_EQ(s.spills, 0u) << s.DebugString();
  EXPECT_EQ(s.grows, 7u) << s.DebugString();  // 12 -> 24 -> ... -> 768 -> 1536.
}

// The classes of up to 4 KiB live in spans (src/spans.h): a CPU's cache of one of them grows to
// 64 KiB of blocks at most, whatever the options allow (here 4096 blocks), and what overflows
// goes straight back to the spans (no TransferStack), not upstream: the upstream sees only the
// spans, one allocation per 64 KiB. Once nothing is in use, two epochs empty the caches and the
// wholly free spans go back upstream.
TEST_P(GrowthTest, ASpanClassCacheStopsAt64KiBAndOverflowsIntoItsSpans) {
  ScopedFakeCpu cpu(0);
  PoolResource r(ResourceOptions(), &upstream_);
  constexpr size_t kBytes = 64;
  constexpr size_t kBlocks = 4000;  // 250 KiB: four times what the cache may hold.
  constexpr uint64_t kHotBytes = 64 * 1024;
  constexpr size_t kSpanBytes = 64 * 1024;  // SpanBytes() of the 64-byte class.

  std::vector<void*> held;
  for (size_t i = 0; i < kBlocks; ++i) held.push_back(r.allocate(kBytes));
  const Stats taken = r.GetStats();
  EXPECT_EQ(taken.misses, kBlocks);
  EXPECT_EQ(taken.cached_blocks(), 0u);  // refill_bytes = 0: nothing cached yet.
  // Every block is in use, out of its span; the upstream holds the spans and nothing else.
  EXPECT_EQ(taken.span_block_bytes - taken.span_free_bytes, kBlocks * kBytes);
  EXPECT_GE(taken.span_bytes, kBlocks * kBytes);
  EXPECT_EQ(taken.span_bytes % kSpanBytes, 0u);
  EXPECT_EQ(upstream_.live_bytes(), taken.span_bytes);
  EXPECT_EQ(upstream_.live_blocks(), taken.span_bytes / kSpanBytes);
  EXPECT_LE(upstream_.live_blocks(), kBlocks * kBytes / kSpanBytes + 1);  // Packed in spans.
  EXPECT_EQ(upstream_.allocations(), upstream_.live_blocks());
  const uint64_t allocations = upstream_.allocations();

  for (void* p : held) r.deallocate(p, kBytes);
  const Stats freed = r.GetStats();
  // The cache grew as far as 64 KiB of blocks (16 -> 32 -> ... -> 1024), and no further.
  EXPECT_EQ(freed.grows, 6u);
  EXPECT_EQ(freed.victim_blocks, 0u);
  EXPECT_LE(freed.primary_bytes, kHotBytes);
  EXPECT_GT(freed.primary_bytes, kHotBytes / 2);
  EXPECT_LE(freed.max_cache_bytes, kHotBytes);
  // What did not fit went back to the spans, not to a shared layer nor upstream.
  EXPECT_EQ(freed.shared_moves, 0u);
  EXPECT_EQ(freed.spills, kBlocks - freed.cached_blocks());
  EXPECT_EQ(freed.span_free_bytes - taken.span_free_bytes,
            (kBlocks - freed.cached_blocks()) * kBytes);
  EXPECT_EQ(freed.span_block_bytes - freed.span_free_bytes, freed.cached_bytes());
  EXPECT_EQ(freed.span_bytes, taken.span_bytes);
  EXPECT_EQ(freed.span_released_bytes, 0u);
  EXPECT_EQ(upstream_.allocations(), allocations);
  EXPECT_EQ(upstream_.live_bytes(), freed.span_bytes);

  // Nothing in use: the first epoch demotes the cached blocks, the second releases them to
  // their spans, which are then wholly free and go back upstream.
  sweeper_->SweepNow();
  sweeper_->SweepNow();
  const Stats swept = r.GetStats();
  EXPECT_EQ(swept.cached_blocks(), 0u);
  EXPECT_EQ(swept.span_bytes, 0u);
  EXPECT_EQ(swept.span_block_bytes, 0u);
  EXPECT_EQ(swept.span_free_bytes, 0u);
  EXPECT_EQ(swept.span_released_bytes, taken.span_bytes);
  EXPECT_EQ(upstream_.live_blocks(), 0u);
  EXPECT_EQ(upstream_.live_bytes(), 0u);
  EXPECT_EQ(upstream_.allocations(), allocations);
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
  // The spans that blocks were taken from during the round stay for one more epoch
  // (Spans::ReleaseEmpty()); after it, only the span of the one cached block is left.
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

// On 8 KiB blocks (kLargeBlock): the caches of the classes of up to 4 KiB stop at 64 KiB per
// class whatever per_cpu_bytes says (they live in spans), so only a larger class grows far
// enough to meet a per-CPU bound.
TEST_P(GrowthTest, APerCpuByteLimitBoundsGrowth) {
  ScopedFakeCpu cpu(0);
  Options options = ResourceOptions();
  options.max_block_size = kLargeBlock;  // Few classes: their starting room is under 1 MiB.
  options.per_cpu_bytes = 0;             // No bound: 1000 blocks of 8 KiB stay on the CPU.
  constexpr size_t kWorkingSet = 1000;
  {
    PoolResource r(options, &upstream_);
    Round(r, kWorkingSet, kLargeBlock);
    const Stats s = r.GetStats();
    EXPECT_EQ(s.primary_blocks, kWorkingSet);
    EXPECT_EQ(s.grows, 7u);  // 8 -> 1024.
    EXPECT_EQ(s.shared_moves + s.spills, 0u);
  }
  // 6 MiB for all classes: the 8 KiB class stops at 512 blocks (4 MiB, with the starting room
  // of the others); room for 1024 (8 MiB) would take the CPU past the bound.
  options.per_cpu_bytes = 6 << 20;
  PoolResource r(options, &upstream_);
  Round(r, kWorkingSet, kLargeBlock);
  const Stats s = r.GetStats();
  EXPECT_EQ(s.grows, 6u);  // 8 -> 512.
  EXPECT_LT(s.primary_blocks, kWorkingSet);
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
//
// The blocks of up to 4 KiB live in spans (src/spans.h): the upstream holds their spans (one
// allocation each, freed only once wholly free), not the blocks, so "cached or released" is
// counted in bytes: with nothing in use, the bytes the upstream holds are the spans plus the
// cached blocks above 4 KiB, and what of the span classes is out of its spans is cached.
void ExpectEveryBlockCachedOrReleased(const TrackingResource& upstream, const Stats& s) {
  const uint64_t span_cached = s.span_block_bytes - s.span_free_bytes;
  ASSERT_LE(s.span_free_bytes, s.span_block_bytes) << s.DebugString();
  ASSERT_LE(s.span_block_bytes, s.span_bytes) << s.DebugString();
  ASSERT_LE(span_cached, s.cached_bytes()) << s.DebugString();
  EXPECT_EQ(upstream.live_bytes(), s.span_bytes + (s.cached_bytes() - span_cached))
      << s.DebugString();
}

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
      ExpectEveryBlockCachedOrReleased(upstream, r.GetStats());
      sweeper.SweepNow();
      ExpectEveryBlockCachedOrReleased(upstream, r.GetStats());
    }
    Sweeper& mine = GetBackground() ? background : sweeper;
    mine.Stop();  // Joins the thread: no sweep is under way from here on.
    ExpectEveryBlockCachedOrReleased(upstream, r.GetStats());
    mine.SweepNow();
    mine.SweepNow();
    // Two idle epochs: the caches are empty, so every span is wholly free and went back.
    const Stats s = r.GetStats();
    EXPECT_EQ(s.cached_blocks(), 0u) << s.DebugString();
    EXPECT_EQ(s.span_bytes, 0u) << s.DebugString();
    EXPECT_GT(s.span_released_bytes, 0u) << s.DebugString();
    EXPECT_EQ(upstream.live_blocks(), 0u) << s.DebugString();
  }
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
}

TEST(GrowthBurstTest, EveryBlockOfABurstIsCachedOrReleased) { BurstAndSweeps(false); }

TEST(GrowthBurstTest, EveryBlockIsCachedOrReleasedWhileSweepsRun) { BurstAndSweeps(true); }

}  // namespace
}  // namespace syncpool
