// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of CpuCache (cpu_cache.h), one CPU's stacks, alone: a cache starts closed and empty at
// its starting capacities; the primary generation is a stack (last in, first out) bounded by
// the capacity; opening and closing to sequences; Grow() doubles up to the maximum, Shrink()
// halves after an epoch without overflow but never below the start or what is held; the epoch
// step (AgeDetach()) under the working-set policy and Go's; TakeAll(), TakeIf() and
// ForEachBlock(); the counters; and threads sharing one cache in the locked mode, with every
// block accounted for.

#include "src/cpu_cache.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "fake_blocks.h"

namespace syncpool {
namespace internal {
namespace {

constexpr size_t kClasses = 2;
constexpr size_t kStride = size_t{1} << kClassStackShift;

using ::syncpool::testing::FakeBlocks;
using ::syncpool::testing::kLayerRounds;

std::set<void*> AsSet(void* const* blocks, size_t n) { return {blocks, blocks + n}; }

// One cache of two classes: class 0 of 64-byte blocks starts at 8 per generation and may grow
// to 32; class 1 of 1024-byte blocks holds 2 and cannot grow. Its stacks lie in `region_`, as
// they would in a BlockCache's region (cache-line aligned, zero-filled).
class CpuCacheTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kStartBytes = 8 * 64 + 2 * 1024;

  CpuCacheTest() {
    const size_t class_bytes[kClasses] = {64, 1024};
    const uint32_t capacities[kClasses] = {8, 2};
    const uint32_t max_capacities[kClasses] = {32, 2};
    cache_ = CpuCache::Create(region_, kStride, class_bytes, capacities, max_capacities,
                              kClasses);
  }
  ~CpuCacheTest() override { CpuCache::Destroy(cache_); }

  alignas(kCacheLineSize) char region_[kClasses * kStride] = {};
  CpuCache* cache_;
  FakeBlocks b_{64};

  // REQUIRES: cache_->lock. Class 0's victim generation holds b_[0, victims) and its primary
  // b_[victims, victims + primary) (a capacity of 8 each).
  void FillBoth(size_t victims, size_t primary) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cache_->lock) {
    for (size_t i = 0; i < victims; ++i) ASSERT_TRUE(cache_->PushPrimary(0, b_[i]));
    uint32_t detached = 0;
    cache_->ReturnSpare(0, cache_->AgeDetach(0, /*whole_primary=*/true, &detached));
    for (size_t i = victims; i < victims + primary; ++i) {
      ASSERT_TRUE(cache_->PushPrimary(0, b_[i]));
    }
    ASSERT_EQ(cache_->VictimCount(0), victims);
    ASSERT_EQ(cache_->PrimaryCount(0), primary);
  }
};

TEST_F(CpuCacheTest, StartsClosedAndEmptyAtItsStartingCapacities) {
  EXPECT_EQ(cache_->num_classes, kClasses);
  EXPECT_EQ(cache_->Capacity(0), 8u);
  EXPECT_EQ(cache_->Capacity(1), 2u);
  EXPECT_EQ(cache_->stack(0).min_capacity, 8u);
  EXPECT_EQ(cache_->stack(0).max_capacity, 32u);
  EXPECT_EQ(cache_->CapacityBytes(), kStartBytes);
  EXPECT_TRUE(cache_->LooksEmpty());
  EXPECT_FALSE(cache_->CanShrink());
  EXPECT_EQ(cache_->Hits(), 0u);
  EXPECT_EQ(cache_->Misses(), 0u);
  for (size_t cls = 0; cls < kClasses; ++cls) {
    EXPECT_FALSE(cache_->IsOpenToSequences(cls));
    EXPECT_EQ(cache_->stack(cls).open_capacity.load(), 0u);
  }
  // Each class's stack where the region's layout puts it.
  EXPECT_EQ(reinterpret_cast<char*>(&cache_->stack(1)), region_ + kStride);
}

TEST_F(CpuCacheTest, PrimaryIsLastInFirstOutUpToTheCapacity) {
  SpinLockHolder l(&cache_->lock);
  for (size_t i = 0; i < 8; ++i) EXPECT_TRUE(cache_->PushPrimary(0, b_[i]));
  EXPECT_FALSE(cache_->PushPrimary(0, b_[8]));  // Full: keeps nothing.
  EXPECT_EQ(cache_->PrimaryCount(0), 8u);
  EXPECT_EQ(cache_->PrimaryCount(1), 0u);  // Classes are separate.
  EXPECT_FALSE(cache_->LooksEmpty());
  for (size_t i = 8; i-- > 0;) EXPECT_EQ(cache_->PopPrimary(0), b_[i]);
  EXPECT_EQ(cache_->PopPrimary(0), nullptr);
  EXPECT_EQ(cache_->PopVictim(0), nullptr);
  EXPECT_TRUE(cache_->LooksEmpty());
}

TEST_F(CpuCacheTest, OpenAndCloseToSequences) {
  SpinLockHolder l(&cache_->lock);
  cache_->OpenToSequences();
  for (size_t cls = 0; cls < kClasses; ++cls) {
    EXPECT_TRUE(cache_->IsOpenToSequences(cls));
    EXPECT_EQ(cache_->stack(cls).open_capacity.load(), cache_->Capacity(cls));
  }
  cache_->CloseToSequences();
  for (size_t cls = 0; cls < kClasses; ++cls) {
    EXPECT_FALSE(cache_->IsOpenToSequences(cls));
    EXPECT_EQ(cache_->stack(cls).open_capacity.load(), 0u);
  }
}

TEST_F(CpuCacheTest, GrowDoublesUpToTheMaximumAndAnOpenCacheFollows) {
  SpinLockHolder l(&cache_->lock);
  cache_->OpenToSequences();
  EXPECT_TRUE(cache_->Grow(0, /*exclusive=*/true));
  EXPECT_EQ(cache_->Capacity(0), 16u);
  EXPECT_EQ(cache_->stack(0).open_capacity.load(), 16u);
  EXPECT_EQ(cache_->CapacityBytes(), kStartBytes + 8 * 64);
  EXPECT_TRUE(cache_->Grow(0, /*exclusive=*/true));
  EXPECT_FALSE(cache_->Grow(0, /*exclusive=*/true));  // At 32, its maximum.
  EXPECT_EQ(cache_->Capacity(0), 32u);
  EXPECT_EQ(cache_->grows.load(), 2u);
  EXPECT_FALSE(cache_->Grow(1, /*exclusive=*/true));  // Starts at its maximum.
  EXPECT_EQ(cache_->CapacityBytes(), kStartBytes + 24 * 64);
  EXPECT_TRUE(cache_->CanShrink());
  for (size_t i = 0; i < 32; ++i) ASSERT_TRUE(cache_->PushPrimary(0, b_[i]));
  EXPECT_FALSE(cache_->PushPrimary(0, b_[32]));
  EXPECT_EQ(cache_->PrimaryCount(0), 32u);
}

// A class reserves slots for what it uses: past its first reserve, growing moves its arrays
// to a mapping of their own, keeping both generations in their order. It needs `exclusive`
// (no inline operation on the arrays) and the spare array in place; otherwise the capacity
// stays.
TEST(CpuCacheReserveTest, GrowingPastTheReserveMovesTheArraysAndKeepsTheirBlocks) {
  alignas(kCacheLineSize) static char region[kClasses * kStride];
  std::fill(std::begin(region), std::end(region), 0);
  const size_t class_bytes[kClasses] = {64, 1024};
  const uint32_t capacities[kClasses] = {4, 2};
  const uint32_t max_capacities[kClasses] = {64, 2};
  CpuCache* cache = CpuCache::Create(region, kStride, class_bytes, capacities, max_capacities,
                                     kClasses, /*per_thread=*/false, /*first_reserve=*/4);
  FakeBlocks b(128);
  {
    SpinLockHolder l(&cache->lock);
    const size_t first_bytes = cache->ReservedBytes();
    EXPECT_EQ(cache->stack(0).reserve.load(), 4u);
    EXPECT_TRUE(cache->GrowMovesArrays(0));
    EXPECT_FALSE(cache->GrowMovesArrays(1));  // At its maximum.
    // Victims b[0..4), primary b[4..8).
    for (size_t i = 0; i < 4; ++i) ASSERT_TRUE(cache->PushPrimary(0, b[i]));
    uint32_t detached = 0;
    cache->ReturnSpare(0, cache->AgeDetach(0, /*whole_primary=*/true, &detached));
    for (size_t i = 4; i < 8; ++i) ASSERT_TRUE(cache->PushPrimary(0, b[i]));
    void** const first_primary = cache->stack(0).primary;

    EXPECT_FALSE(cache->Grow(0, /*exclusive=*/false));  // Sequences might use the arrays.
    EXPECT_EQ(cache->Capacity(0), 4u);
    EXPECT_EQ(cache->stack(0).primary, first_primary);

    ASSERT_TRUE(cache->Grow(0, /*exclusive=*/true));
    EXPECT_EQ(cache->Capacity(0), 8u);
    EXPECT_EQ(cache->stack(0).reserve.load(), 8u);
    EXPECT_NE(cache->stack(0).primary, first_primary);
    EXPECT_GT(cache->ReservedBytes(), first_bytes);
    for (size_t i = 8; i < 12; ++i) ASSERT_TRUE(cache->PushPrimary(0, b[i]));
    ASSERT_TRUE(cache->Grow(0, /*exclusive=*/true));  // Moves again: reserve 16.
    EXPECT_EQ(cache->stack(0).reserve.load(), 16u);
    // Within the reserve nothing moves, and no exclusivity is needed.
    cache->stack(0).capacity.store(8);  // As if an epoch had halved it.
    void** const second = cache->stack(0).primary;
    ASSERT_TRUE(cache->Grow(0, /*exclusive=*/false));
    EXPECT_EQ(cache->stack(0).primary, second);

    // With the spare detached (the epoch releasing a generation), the arrays cannot move.
    void** const retired = cache->AgeDetach(0, /*whole_primary=*/true, &detached);
    EXPECT_EQ(detached, 4u);  // b[0..4).
    cache->stack(0).capacity.store(16);  // The epoch's Shrink() halved it.
    EXPECT_FALSE(cache->Grow(0, /*exclusive=*/true));
    EXPECT_EQ(cache->stack(0).reserve.load(), 16u);
    cache->ReturnSpare(0, retired);
    ASSERT_TRUE(cache->Grow(0, /*exclusive=*/true));
    EXPECT_EQ(cache->stack(0).reserve.load(), 32u);

    // The former primary b[4..12) is the victim generation now, in its order.
    for (size_t i = 12; i-- > 4;) EXPECT_EQ(cache->PopVictim(0), b[i]);
    EXPECT_EQ(cache->PopVictim(0), nullptr);
    EXPECT_EQ(cache->PopPrimary(0), nullptr);
    for (size_t i = 0; i < 32; ++i) ASSERT_TRUE(cache->PushPrimary(0, b[i]));
    for (size_t i = 32; i-- > 0;) EXPECT_EQ(cache->PopPrimary(0), b[i]);
  }
  CpuCache::Destroy(cache);
}

TEST_F(CpuCacheTest, ShrinkHalvesAfterAnEpochWithoutOverflowButNotBelowWhatIsHeld) {
  SpinLockHolder l(&cache_->lock);
  ASSERT_TRUE(cache_->Grow(0, /*exclusive=*/true));
  ASSERT_TRUE(cache_->Grow(0, /*exclusive=*/true));  // 32.
  cache_->NoteOverflow(0);
  cache_->Shrink(0, /*to_start=*/false);  // An overflow since the last epoch: kept.
  EXPECT_EQ(cache_->Capacity(0), 32u);
  cache_->Shrink(0, /*to_start=*/false);  // The overflow count was reset: halved.
  EXPECT_EQ(cache_->Capacity(0), 16u);
  for (size_t i = 0; i < 12; ++i) ASSERT_TRUE(cache_->PushPrimary(0, b_[i]));
  cache_->Shrink(0, /*to_start=*/false);  // Not below the 12 held.
  EXPECT_EQ(cache_->Capacity(0), 12u);
  for (size_t i = 0; i < 12; ++i) ASSERT_NE(cache_->PopPrimary(0), nullptr);
  cache_->Shrink(0, /*to_start=*/true);  // Back to the start at once; never below it.
  EXPECT_EQ(cache_->Capacity(0), 8u);
  cache_->Shrink(0, /*to_start=*/false);
  EXPECT_EQ(cache_->Capacity(0), 8u);
  EXPECT_EQ(cache_->CapacityBytes(), kStartBytes);
  // The slot pages above the capacity are still there until they are given back.
  EXPECT_TRUE(cache_->CanShrink());
  cache_->ReleaseSlotPages();
  EXPECT_FALSE(cache_->CanShrink());
}

// The working-set policy: an epoch keeps primary what the epoch's callers took, from the
// victims or from below the level the last epoch left, and demotes the rest.
TEST_F(CpuCacheTest, AnEpochKeepsTheWorkingSetPrimaryAndDemotesTheRest) {
  SpinLockHolder l(&cache_->lock);
  for (size_t i = 0; i < 6; ++i) ASSERT_TRUE(cache_->PushPrimary(0, b_[i]));  // A burst ends.
  uint32_t detached = 99;
  void** retired = cache_->AgeDetach(0, /*whole_primary=*/false, &detached);
  EXPECT_EQ(detached, 0u);
  EXPECT_EQ(cache_->PrimaryCount(0), 0u);  // Only given back: no working set.
  EXPECT_EQ(cache_->VictimCount(0), 6u);
  cache_->ReturnSpare(0, retired);

  // Callers take two victims (the most recent first) and give them back.
  void* taken[2] = {cache_->PopVictim(0), cache_->PopVictim(0)};
  EXPECT_EQ(taken[0], b_[5]);
  EXPECT_EQ(taken[1], b_[4]);
  for (void* p : taken) ASSERT_TRUE(cache_->PushPrimary(0, p));
  retired = cache_->AgeDetach(0, /*whole_primary=*/false, &detached);
  ASSERT_EQ(detached, 4u);  // The victims nobody took leave.
  EXPECT_EQ(AsSet(retired, 4), std::set<void*>({b_[0], b_[1], b_[2], b_[3]}));
  EXPECT_EQ(cache_->PrimaryCount(0), 2u);  // The two taken stay primary.
  EXPECT_EQ(cache_->VictimCount(0), 0u);
  cache_->ReturnSpare(0, retired);

  // Callers dig one block below what the epoch left: the top block stays, the other is demoted.
  void* top = cache_->PopPrimary(0);
  ASSERT_TRUE(cache_->PushPrimary(0, top));
  retired = cache_->AgeDetach(0, /*whole_primary=*/false, &detached);
  EXPECT_EQ(detached, 0u);
  cache_->ReturnSpare(0, retired);
  EXPECT_EQ(cache_->PrimaryCount(0), 1u);
  EXPECT_EQ(cache_->VictimCount(0), 1u);
  EXPECT_EQ(cache_->PopPrimary(0), top);
  EXPECT_NE(cache_->PopVictim(0), top);
}

// Go's policy: every epoch demotes the whole primary generation, used or not.
TEST_F(CpuCacheTest, GosPolicyDemotesTheWholePrimary) {
  SpinLockHolder l(&cache_->lock);
  for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(cache_->PushPrimary(0, b_[i]));
  uint32_t detached = 0;
  cache_->ReturnSpare(0, cache_->AgeDetach(0, /*whole_primary=*/true, &detached));
  void* taken[2] = {cache_->PopVictim(0), cache_->PopVictim(0)};
  for (void* p : taken) ASSERT_TRUE(cache_->PushPrimary(0, p));
  void** retired = cache_->AgeDetach(0, /*whole_primary=*/true, &detached);
  ASSERT_EQ(detached, 1u);
  EXPECT_EQ(retired[0], b_[0]);
  cache_->ReturnSpare(0, retired);
  EXPECT_EQ(cache_->PrimaryCount(0), 0u);
  EXPECT_EQ(cache_->VictimCount(0), 2u);  // The two used ones too.
}

TEST_F(CpuCacheTest, TakeAllTakesTheVictimsThenThePrimaryFromItsTop) {
  SpinLockHolder l(&cache_->lock);
  FillBoth(/*victims=*/3, /*primary=*/2);
  void* out[8] = {};
  ASSERT_EQ(cache_->TakeAll(0, out, 4), 4u);  // Room for four of five.
  EXPECT_EQ(AsSet(out, 3), std::set<void*>({b_[0], b_[1], b_[2]}));
  EXPECT_EQ(out[3], b_[4]);
  EXPECT_EQ(cache_->VictimCount(0), 0u);
  EXPECT_EQ(cache_->PopPrimary(0), b_[3]);
  EXPECT_TRUE(cache_->LooksEmpty());
}

TEST_F(CpuCacheTest, TakeIfMovesThePickedBlocksAndKeepsTheOthersInOrder) {
  SpinLockHolder l(&cache_->lock);
  FillBoth(/*victims=*/4, /*primary=*/4);
  std::vector<void*> seen;
  cache_->ForEachBlock(0, /*victims_only=*/true, [&](void* p) { seen.push_back(p); });
  EXPECT_EQ(seen, std::vector<void*>({b_[0], b_[1], b_[2], b_[3]}));
  auto odd = [&](void* p) { return p == b_[1] || p == b_[3] || p == b_[5] || p == b_[7]; };
  void* out[8] = {};
  EXPECT_EQ(cache_->TakeIf(0, /*victims_only=*/true, odd, out, 8), 2u);
  EXPECT_EQ(out[0], b_[1]);
  EXPECT_EQ(out[1], b_[3]);
  EXPECT_EQ(cache_->TakeIf(0, /*victims_only=*/false, odd, out, 1), 1u);  // Room for one.
  EXPECT_EQ(out[0], b_[5]);
  seen.clear();
  cache_->ForEachBlock(0, /*victims_only=*/false, [&](void* p) { seen.push_back(p); });
  EXPECT_EQ(seen, std::vector<void*>({b_[0], b_[2], b_[4], b_[6], b_[7]}));
}

TEST_F(CpuCacheTest, CountersAndActivity) {
  SpinLockHolder l(&cache_->lock);
  const uint64_t idle = cache_->Activity();
  ASSERT_TRUE(cache_->PushPrimary(1, b_[0]));  // A push raises a count.
  const uint64_t after_push = cache_->Activity();
  EXPECT_NE(after_push, idle);
  ASSERT_EQ(cache_->PopPrimary(1), b_[0]);
  cache_->CountHit(1);  // A pop that counts its hit cannot bring the figure back.
  EXPECT_NE(cache_->Activity(), idle);
  EXPECT_NE(cache_->Activity(), after_push);
  EXPECT_EQ(cache_->Hits(), 1u);
  cache_->misses.fetch_add(1);  // A miss no sequence counted, and one a sequence counted.
  cache_->stack(0).misses.fetch_add(1);
  EXPECT_EQ(cache_->Misses(), 2u);
}

// Protocol, the locked mode: worker threads share the cache, each operation under its lock:
// a worker pushes blocks of its own (growing the class when it is full) and pops blocks
// (counting a hit); an epoch thread runs the working-set epoch step under the lock and keeps
// what it detaches. A block is always in one place: a worker's hand, the cache, or the epoch
// thread's hand; at the end every block is in exactly one of them, and the hits are the pops.
TEST_F(CpuCacheTest, ThreadsSharingTheLockedCacheLoseAndDuplicateNothing) {
  constexpr int kWorkers = 4;
  constexpr size_t kPerWorker = 64;
  FakeBlocks blocks(kWorkers * kPerWorker);
  std::vector<std::vector<void*>> hands(kWorkers);
  std::atomic<uint64_t> pops{0};
  std::atomic<int> done{0};
  std::vector<void*> retired;
  std::thread epoch_thread([&] {
    for (int epochs = 0; done.load(std::memory_order_acquire) < kWorkers || epochs < 10;
         ++epochs) {
      SpinLockHolder l(&cache_->lock);
      uint32_t n = 0;
      void** slots = cache_->AgeDetach(0, /*whole_primary=*/false, &n);
      retired.insert(retired.end(), slots, slots + n);
      cache_->ReturnSpare(0, slots);
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kWorkers; ++t) {
    for (size_t i = 0; i < kPerWorker; ++i) hands[t].push_back(blocks[t * kPerWorker + i]);
    workers.emplace_back([&, t] {
      std::vector<void*>& hand = hands[t];
      std::mt19937 rng(t + 1);
      uint64_t my_pops = 0;
      for (int i = 0; i < kLayerRounds; ++i) {
        SpinLockHolder l(&cache_->lock);
        if (!hand.empty() && rng() % 2 == 0) {
          if (!cache_->PushPrimary(0, hand.back())) {
            cache_->NoteOverflow(0);
            if (!cache_->Grow(0, /*exclusive=*/true)) continue;  // At its maximum: keep the block.
            ASSERT_TRUE(cache_->PushPrimary(0, hand.back()));
          }
          hand.pop_back();
        } else {
          void* p = cache_->PopPrimary(0);
          if (p == nullptr) p = cache_->PopVictim(0);
          if (p == nullptr) continue;
          cache_->CountHit(0);
          ++my_pops;
          hand.push_back(p);
        }
      }
      pops.fetch_add(my_pops);
      done.fetch_add(1, std::memory_order_release);
    });
  }
  for (std::thread& w : workers) w.join();
  epoch_thread.join();

  SpinLockHolder l(&cache_->lock);
  EXPECT_LE(cache_->PrimaryCount(0), cache_->Capacity(0));
  EXPECT_LE(cache_->VictimCount(0), cache_->Capacity(0));
  EXPECT_LE(cache_->Capacity(0), 32u);
  EXPECT_EQ(cache_->Hits(), pops.load());
  void* left[64];
  const size_t n = cache_->TakeAll(0, left, 64);
  EXPECT_TRUE(cache_->LooksEmpty());
  hands.push_back(retired);
  hands.emplace_back(left, left + n);
  EXPECT_EQ(blocks.WhereNotOnce(hands), "");  // None lost, none copied twice.
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
