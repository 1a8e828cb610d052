// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of the caching policy (syncpool/internal/block_cache.h) with fake blocks, a releaser
// that records what it is given, fake CPU ids and a sweeper driven by SweepNow().

#include "src/block_cache.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "recording_releaser.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"

namespace syncpool {
namespace internal {
namespace {

using ::syncpool::testing::RecordingReleaser;
using ::syncpool::testing::ScopedFakeCpu;

constexpr size_t kSmall = 0;  // Class 0: 16-byte blocks.
constexpr size_t kLarge = 1;  // Class 1: 64-byte blocks.

// A cache needs at least one class and one capacity per class; anything else is refused
// with std::invalid_argument before anything is mapped or allocated.
TEST(BlockCacheConstructionTest, RefusesMissingClassesOrCapacities) {
  Sweeper sweeper{Sweeper::Options::Manual()};
  RecordingReleaser releaser;
  EXPECT_THROW(BlockCache({}, {}, &releaser, &sweeper), std::invalid_argument);
  EXPECT_THROW(BlockCache({16, 64}, {8}, &releaser, &sweeper), std::invalid_argument);
  EXPECT_THROW(BlockCache({16}, {8, 8}, &releaser, &sweeper), std::invalid_argument);
  BlockCache fine({16}, {8}, &releaser, &sweeper);
  EXPECT_EQ(fine.num_classes(), 1u);
}

class BlockCacheTest : public ::testing::Test {
 protected:
  // A cache of two classes (16 and 64 bytes), `capacity` blocks per CPU and generation each.
  // Blocks 0 (small) and 1 (large) on CPU 0 and 2 (small) on CPU 1 in the victim generation,
  // block 3 (small) in CPU 1's primary generation.
  void FillBothGenerationsOfTwoCpus(BlockCache& cache) {
    {
      ScopedFakeCpu cpu(0);
      cache.Put(kSmall, block(0));
      cache.Put(kLarge, block(1));
    }
    {
      ScopedFakeCpu cpu(1);
      cache.Put(kSmall, block(2));
      sweeper_.SweepNow();  // Blocks 0, 1 and 2 become victims.
      cache.Put(kSmall, block(3));
    }
  }

  void ExpectBlocksOfTwoCpusReleasedOnce() {
    EXPECT_EQ(releaser_.released().size(), 4u);
    EXPECT_EQ(releaser_.TimesReleased(kSmall, block(0)), 1);
    EXPECT_EQ(releaser_.TimesReleased(kLarge, block(1)), 1);
    EXPECT_EQ(releaser_.TimesReleased(kSmall, block(2)), 1);
    EXPECT_EQ(releaser_.TimesReleased(kSmall, block(3)), 1);
  }

  // Per CPU in every build (ThreadSanitizer's included): the fake CPU ids name the caches.
  BlockCache MakeCache(uint32_t capacity = 4) {
    internal::CachePolicy policy;
    policy.mode = CacheMode::kPerCpu;
    return BlockCache({16, 64}, {capacity, capacity}, &releaser_, &sweeper_,
                      /*allow_rseq=*/true, policy);
  }

  void* block(int i) { return &storage_[i]; }

  Sweeper sweeper_{Sweeper::Options::Manual()};
  RecordingReleaser releaser_;
  alignas(64) char storage_[256][64] = {};
};

// Skips a test that places blocks on two fake CPUs when there is only one CPU id.
#define SYNCPOOL_REQUIRE_TWO_CPUS()                                      \
  do {                                                                   \
    if (ScopedFakeCpu::NumCpus() < 2) GTEST_SKIP() << "needs 2 CPU ids"; \
  } while (0)

TEST_F(BlockCacheTest, PutThenGetOnSameCpuIsLifo) {
  BlockCache cache = MakeCache();
  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(0));
  cache.Put(kSmall, block(1));
  EXPECT_EQ(cache.Get(kSmall), block(1));
  EXPECT_EQ(cache.Get(kSmall), block(0));
  EXPECT_EQ(cache.Get(kSmall), nullptr);
  EXPECT_TRUE(releaser_.released().empty());
}

TEST_F(BlockCacheTest, ClassesAreSeparate) {
  BlockCache cache = MakeCache();
  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(0));
  EXPECT_EQ(cache.Get(kLarge), nullptr);
  EXPECT_EQ(cache.Get(kSmall), block(0));
}

TEST_F(BlockCacheTest, GetOnEmptyCacheIsACountedMiss) {
  BlockCache cache = MakeCache();
  ScopedFakeCpu cpu(0);
  EXPECT_EQ(cache.Get(kSmall), nullptr);
  EXPECT_EQ(cache.Get(kLarge), nullptr);
  const Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.hits, 0u);
  EXPECT_EQ(stats.cached_blocks(), 0u);
}

TEST_F(BlockCacheTest, FullCacheMovesBatchesToTheTransferStackThenSpills) {
  // Capacity 2: batches of one block, and a TransferStack of 4 blocks per generation.
  BlockCache cache = MakeCache(/*capacity=*/2);
  ASSERT_EQ(cache.Batch(kSmall), 1u);
  ASSERT_EQ(cache.TransferCapacity(kSmall), 4u);
  ScopedFakeCpu cpu(0);
  for (int i = 0; i <= 5; ++i) cache.Put(kSmall, block(i));
  // Blocks 1, 2, 3 and 4 each made room for the next one: the TransferStack is now full.
  EXPECT_TRUE(releaser_.released().empty());
  EXPECT_EQ(cache.Snapshot().primary_blocks, 6u);
  cache.Put(kSmall, block(6));  // Moves block 5 out, which the TransferStack cannot take.
  ASSERT_EQ(releaser_.released().size(), 1u);
  EXPECT_EQ(releaser_.released()[0], std::make_pair(kSmall, block(5)));
  // The other class has its own capacity.
  cache.Put(kLarge, block(7));
  EXPECT_EQ(releaser_.released().size(), 1u);

  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.spills, 1u);
  EXPECT_EQ(stats.shared_moves, 4u);  // Blocks 1 to 4; block 5 found no room and spilled.
  EXPECT_EQ(stats.primary_blocks, 7u);
  EXPECT_EQ(stats.primary_bytes, 6u * 16 + 64);
  // The CPU's own blocks first, then the TransferStack's, newest first.
  for (int i : {6, 0, 4, 3, 2, 1}) EXPECT_EQ(cache.Get(kSmall), block(i)) << i;
  EXPECT_EQ(cache.Get(kSmall), nullptr);
  stats = cache.Snapshot();
  EXPECT_EQ(stats.hits, 6u);
  EXPECT_EQ(stats.misses, 1u);
}

TEST_F(BlockCacheTest, TransferStackFeedsAnotherCpuAndAgesWithTheSweeps) {
  SYNCPOOL_REQUIRE_TWO_CPUS();
  BlockCache cache = MakeCache(/*capacity=*/2);
  {
    ScopedFakeCpu producer(0);
    for (int i = 0; i < 4; ++i) cache.Put(kSmall, block(i));  // Blocks 1 and 2 move out.
  }
  ScopedFakeCpu consumer(1);
  EXPECT_EQ(cache.Get(kSmall), block(2));  // A batch of one, from the TransferStack.
  sweeper_.SweepNow();  // Block 1 becomes a victim of the TransferStack...
  EXPECT_EQ(cache.Snapshot().victim_blocks, 3u);  // ... with blocks 0 and 3 on CPU 0.
  EXPECT_EQ(cache.Get(kSmall), block(1));          // ... and is still served.
  sweeper_.SweepNow();
  sweeper_.SweepNow();  // Blocks 0 and 3 left unused for two epochs: released.
  EXPECT_EQ(releaser_.TimesReleased(kSmall, block(0)), 1);
  EXPECT_EQ(releaser_.TimesReleased(kSmall, block(3)), 1);
  EXPECT_EQ(cache.Snapshot().cached_blocks(), 0u);
}

TEST_F(BlockCacheTest, OneSweepMovesBlocksToVictimAndGetStillFindsThem) {
  BlockCache cache = MakeCache();
  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(0));
  sweeper_.SweepNow();
  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.primary_blocks, 0u);
  EXPECT_EQ(stats.victim_blocks, 1u);
  EXPECT_EQ(stats.victim_bytes, 16u);
  EXPECT_TRUE(releaser_.released().empty());

  EXPECT_EQ(cache.Get(kSmall), block(0));
  stats = cache.Snapshot();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.cached_blocks(), 0u);
}

TEST_F(BlockCacheTest, GetTakesItsOwnPrimaryThenItsOwnVictimsAndNeverAnotherCpus) {
  SYNCPOOL_REQUIRE_TWO_CPUS();
  BlockCache cache = MakeCache();
  {
    ScopedFakeCpu cpu(1);
    cache.Put(kSmall, block(9));
  }
  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(0));
  sweeper_.SweepNow();  // block(0) and block(9) become victims.
  {
    ScopedFakeCpu other(1);
    cache.Put(kSmall, block(8));
  }
  cache.Put(kSmall, block(1));  // CPU 0's primary.

  EXPECT_EQ(cache.Get(kSmall), block(1));  // Own primary.
  EXPECT_EQ(cache.Get(kSmall), block(0));  // Own victim.
  EXPECT_EQ(cache.Get(kSmall), nullptr);   // Neither CPU 1's victim nor its primary.
  const Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.primary_blocks, 1u);  // block(8), still on CPU 1.
  EXPECT_EQ(stats.victim_blocks, 1u);   // block(9), still on CPU 1.
}

TEST_F(BlockCacheTest, TwoSweepsWithoutUseReleaseExactlyOnce) {
  BlockCache cache = MakeCache();
  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(0));
  cache.Put(kLarge, block(1));
  sweeper_.SweepNow();
  EXPECT_TRUE(releaser_.released().empty());
  sweeper_.SweepNow();
  EXPECT_EQ(releaser_.TimesReleased(kSmall, block(0)), 1);
  EXPECT_EQ(releaser_.TimesReleased(kLarge, block(1)), 1);
  EXPECT_EQ(releaser_.released().size(), 2u);

  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.cached_blocks(), 0u);
  EXPECT_EQ(stats.swept_blocks, 2u);
  EXPECT_EQ(stats.swept_bytes, 16u + 64u);
  EXPECT_EQ(stats.epochs, 2u);

  sweeper_.SweepNow();
  EXPECT_EQ(releaser_.released().size(), 2u);
  EXPECT_EQ(cache.Get(kSmall), nullptr);
  stats = cache.Snapshot();
  EXPECT_EQ(stats.swept_blocks, 2u);
  EXPECT_EQ(stats.epochs, 3u);
}

TEST_F(BlockCacheTest, BlockInUseSurvivesSweeps) {
  BlockCache cache = MakeCache();
  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(0));
  for (int i = 0; i < 5; ++i) {
    sweeper_.SweepNow();
    void* b = cache.Get(kSmall);
    ASSERT_EQ(b, block(0));
    cache.Put(kSmall, b);
  }
  EXPECT_TRUE(releaser_.released().empty());
  EXPECT_EQ(cache.Snapshot().hits, 5u);
}

TEST_F(BlockCacheTest, CapacityGrowsToTheWorkingSetAndShrinksBackWhenIdle) {
  // Class 0 starts with room for 4 blocks per generation and may grow to 64.
  BlockCache::Policy policy;
  policy.max_capacities = {64, 4};
  BlockCache cache({16, 64}, {4, 4}, &releaser_, &sweeper_, /*allow_rseq=*/true, policy);
  ScopedFakeCpu cpu(0);
  // A working set of 40 blocks, given back and taken again: the first Puts beyond 4 find the
  // stack full and double it (4, 8, 16, 32, 64), so nothing spills or moves to the shared
  // layer, and every later round hits.
  constexpr int kWorkingSet = 40;
  for (int i = 0; i < kWorkingSet; ++i) cache.Put(kSmall, block(i));
  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.primary_blocks, uint64_t{kWorkingSet});
  EXPECT_EQ(stats.spills, 0u);
  EXPECT_EQ(stats.shared_moves, 0u);
  EXPECT_TRUE(releaser_.released().empty());
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> taken;
    for (int i = 0; i < kWorkingSet; ++i) taken.push_back(cache.Get(kSmall));
    for (void* b : taken) EXPECT_NE(b, nullptr);
    for (void* b : taken) cache.Put(kSmall, b);
  }
  stats = cache.Snapshot();
  EXPECT_EQ(stats.hits, uint64_t{3 * kWorkingSet});
  EXPECT_EQ(stats.misses, 0u);
  // The other class did not grow: its fifth Put moves a batch (2 blocks) to the shared layer.
  for (int i = 0; i < 5; ++i) cache.Put(kLarge, block(100 + i));
  EXPECT_EQ(cache.Snapshot().shared_moves, 2u);

  // The working set stays cached across an epoch that used it (working-set retention).
  sweeper_.SweepNow();
  EXPECT_EQ(cache.Snapshot().cached_blocks(), uint64_t{kWorkingSet} + 5);
  // Idle from here on: two epochs release every block once, and the capacity halves at
  // each epoch that saw no full stack, back to where it started (4) and no lower.
  for (int i = 0; i < 6; ++i) sweeper_.SweepNow();
  stats = cache.Snapshot();
  EXPECT_EQ(stats.cached_blocks(), 0u);
  for (int i = 0; i < kWorkingSet; ++i) EXPECT_EQ(releaser_.TimesReleased(kSmall, block(i)), 1);
  // Back at 4: the fifth Put finds the stack full and grows it again (no shared move).
  for (int i = 0; i < 4; ++i) cache.Put(kSmall, block(i));
  EXPECT_EQ(cache.Snapshot().shared_moves, 2u);
  for (int i = 0; i < 4; ++i) EXPECT_NE(cache.Get(kSmall), nullptr);
}

TEST_F(BlockCacheTest, GrowthStopsAtTheMaximumThenMovesBatchesToTheSharedLayer) {
  BlockCache::Policy policy;
  policy.max_capacities = {8, 4};
  BlockCache cache({16, 64}, {2, 4}, &releaser_, &sweeper_, /*allow_rseq=*/true, policy);
  ScopedFakeCpu cpu(0);
  for (int i = 0; i < 8; ++i) cache.Put(kSmall, block(i));  // Grows 2 -> 4 -> 8.
  EXPECT_EQ(cache.Snapshot().shared_moves, 0u);
  cache.Put(kSmall, block(8));  // At the maximum: a batch of Batch(kSmall) = 1 block moves.
  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.shared_moves, cache.Batch(kSmall));
  EXPECT_EQ(stats.cached_blocks(), 9u);
  EXPECT_EQ(stats.spills, 0u);
}

TEST_F(BlockCacheTest, ABudgetStopsGrowth) {
  BlockCache::Policy policy;
  policy.max_capacities = {1024, 4};
  policy.max_cached_bytes = 16 * 16;  // 16 blocks of class 0.
  BlockCache cache({16, 64}, {4, 4}, &releaser_, &sweeper_, /*allow_rseq=*/true, policy);
  ScopedFakeCpu cpu(0);
  for (int i = 0; i < 200; ++i) cache.Put(kSmall, block(i));
  // Growth stopped where the CPU's stack, full, would hold the budget: 4 -> 8 -> 16 blocks;
  // then batches filled the shared layer, and the rest spilled.
  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.primary_blocks, 16u + cache.TransferCapacity(kSmall));
  EXPECT_GT(stats.spills + stats.over_budget_blocks, 0u);
  sweeper_.SweepNow();  // The epoch enforces the budget on everything cached.
  stats = cache.Snapshot();
  EXPECT_LE(stats.cached_bytes(), 16u * 16u);
}

TEST_F(BlockCacheTest, DrainReleasesEveryGenerationOfEveryCpu) {
  SYNCPOOL_REQUIRE_TWO_CPUS();
  BlockCache cache = MakeCache();
  FillBothGenerationsOfTwoCpus(cache);
  cache.Drain();
  ExpectBlocksOfTwoCpusReleasedOnce();

  const Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.cached_blocks(), 0u);
  EXPECT_EQ(stats.cached_bytes(), 0u);
  EXPECT_EQ(stats.swept_blocks, 0u);  // Drained, not swept.

  ScopedFakeCpu cpu(0);
  EXPECT_EQ(cache.Get(kSmall), nullptr);
  cache.Put(kSmall, block(4));  // Still usable after Drain.
  EXPECT_EQ(cache.Get(kSmall), block(4));
}

// The fallback Drain() takes when it cannot allocate: the same outcome, block by block.
TEST_F(BlockCacheTest, DrainOneByOneReleasesEveryGenerationOfEveryCpu) {
  SYNCPOOL_REQUIRE_TWO_CPUS();
  BlockCache cache = MakeCache();
  FillBothGenerationsOfTwoCpus(cache);
  cache.DrainOneByOne();
  ExpectBlocksOfTwoCpusReleasedOnce();
  EXPECT_EQ(cache.Snapshot().cached_blocks(), 0u);
}

TEST_F(BlockCacheTest, SnapshotFigures) {
  SYNCPOOL_REQUIRE_TWO_CPUS();
  BlockCache cache = MakeCache();
  {
    ScopedFakeCpu cpu(0);
    cache.Put(kSmall, block(0));
    cache.Put(kSmall, block(1));
  }
  {
    ScopedFakeCpu cpu(1);
    cache.Put(kLarge, block(2));
  }
  Stats stats = cache.Snapshot();
  EXPECT_EQ(stats.primary_blocks, 3u);
  EXPECT_EQ(stats.primary_bytes, 2u * 16 + 64);
  EXPECT_EQ(stats.victim_blocks, 0u);
  EXPECT_EQ(stats.epochs, 0u);

  sweeper_.SweepNow();
  stats = cache.Snapshot();
  EXPECT_EQ(stats.primary_blocks, 0u);
  EXPECT_EQ(stats.primary_bytes, 0u);
  EXPECT_EQ(stats.victim_blocks, 3u);
  EXPECT_EQ(stats.victim_bytes, 2u * 16 + 64);
  EXPECT_EQ(stats.epochs, 1u);

  ScopedFakeCpu cpu(0);
  cache.Put(kSmall, block(3));
  sweeper_.SweepNow();  // Releases blocks 0, 1 and 2; block 3 becomes the victim.
  stats = cache.Snapshot();
  EXPECT_EQ(stats.swept_blocks, 3u);
  EXPECT_EQ(stats.swept_bytes, 2u * 16 + 64);
  EXPECT_EQ(stats.primary_blocks, 0u);
  EXPECT_EQ(stats.victim_blocks, 1u);
  EXPECT_EQ(stats.victim_bytes, 16u);
  EXPECT_EQ(stats.epochs, 2u);

  EXPECT_EQ(cache.Get(kSmall), block(3));
  EXPECT_EQ(cache.Get(kLarge), nullptr);
  stats = cache.Snapshot();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.spills, 0u);
  EXPECT_EQ(stats.cached_blocks(), 0u);
}

TEST_F(BlockCacheTest, DestructionReleasesCachedBlocksAndLeavesTheSweeper) {
  SYNCPOOL_REQUIRE_TWO_CPUS();
  {
    BlockCache cache = MakeCache();
    {
      ScopedFakeCpu cpu(0);
      cache.Put(kSmall, block(0));
    }
    ScopedFakeCpu cpu(1);
    cache.Put(kLarge, block(1));
    sweeper_.SweepNow();
    cache.Put(kSmall, block(2));
    EXPECT_TRUE(releaser_.released().empty());
  }
  EXPECT_EQ(releaser_.released().size(), 3u);
  EXPECT_EQ(releaser_.TimesReleased(kSmall, block(0)), 1);
  EXPECT_EQ(releaser_.TimesReleased(kLarge, block(1)), 1);
  EXPECT_EQ(releaser_.TimesReleased(kSmall, block(2)), 1);

  const int calls = releaser_.calls();
  const uint64_t epochs = sweeper_.epochs();
  sweeper_.SweepNow();  // Must not visit the destroyed cache.
  EXPECT_EQ(sweeper_.epochs(), epochs + 1);
  EXPECT_EQ(releaser_.calls(), calls);
  EXPECT_EQ(releaser_.released().size(), 3u);
}

TEST_F(BlockCacheTest, SweeperVisitsOnlyLiveCaches) {
  BlockCache kept = MakeCache();
  ScopedFakeCpu cpu(0);
  {
    BlockCache gone = MakeCache();
    gone.Put(kSmall, block(0));
  }
  ASSERT_EQ(releaser_.released().size(), 1u);
  kept.Put(kSmall, block(1));
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  EXPECT_EQ(releaser_.released().size(), 2u);
  EXPECT_EQ(releaser_.TimesReleased(kSmall, block(1)), 1);
  EXPECT_EQ(kept.Snapshot().epochs, 2u);
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
