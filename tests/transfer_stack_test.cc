// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of TransferStack (transfer_stack.h), the shared layer of a BlockCache, alone: what
// Insert() takes when it fills up, Remove()'s order (the primary generation first, most recent
// first, then the victims), the epoch step (AgeDetach() and ReturnSpare()), TakeAll(), TakeIf()
// and ForEachBlock(), and threads moving batches in and out while epochs run, with every block
// accounted for.

#include "src/transfer_stack.h"

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

using ::syncpool::testing::FakeBlocks;
using ::syncpool::testing::kLayerRounds;

std::set<void*> AsSet(void* const* blocks, size_t n) { return {blocks, blocks + n}; }

// A stack of capacity 8 whose victim generation holds b[0, victims) and primary generation
// b[victims, victims + primary).
void FillBoth(TransferStack& stack, FakeBlocks& b, size_t victims, size_t primary) {
  stack.Init(8);
  const std::vector<void*> old_blocks = b.Range(0, victims);
  ASSERT_EQ(stack.Insert(old_blocks.data(), victims), victims);
  uint32_t detached = 99;
  stack.ReturnSpare(stack.AgeDetach(&detached));
  ASSERT_EQ(detached, 0u);
  const std::vector<void*> recent = b.Range(victims, victims + primary);
  ASSERT_EQ(stack.Insert(recent.data(), primary), primary);
  ASSERT_EQ(stack.VictimCount(), victims);
  ASSERT_EQ(stack.PrimaryCount(), primary);
}

TEST(TransferStackTest, InsertTakesTheFirstBlocksUpToItsCapacity) {
  TransferStack stack;
  stack.Init(4);
  EXPECT_EQ(stack.capacity(), 4u);
  EXPECT_TRUE(stack.LooksEmpty());
  FakeBlocks b(8);
  const std::vector<void*> first = b.Range(0, 3);
  EXPECT_EQ(stack.Insert(first.data(), first.size()), 3u);
  const std::vector<void*> more = b.Range(3, 6);
  EXPECT_EQ(stack.Insert(more.data(), more.size()), 1u);  // Room for one: the first, b[3].
  EXPECT_EQ(stack.PrimaryCount(), 4u);
  EXPECT_EQ(stack.VictimCount(), 0u);
  EXPECT_FALSE(stack.LooksEmpty());
  EXPECT_EQ(stack.Insert(more.data() + 1, 2), 0u);  // Full.

  void* out[8];
  ASSERT_EQ(stack.TakeAll(out), 4u);
  EXPECT_EQ(AsSet(out, 4), std::set<void*>({b[0], b[1], b[2], b[3]}));
  EXPECT_TRUE(stack.LooksEmpty());
}

TEST(TransferStackTest, RemoveTakesTheMostRecentPrimaryBlocksThenTheVictims) {
  TransferStack stack;
  FakeBlocks b(8);
  FillBoth(stack, b, /*victims=*/3, /*primary=*/4);

  void* out[8] = {};
  ASSERT_EQ(stack.Remove(out, 2), 2u);  // The top of the primary generation.
  EXPECT_EQ(AsSet(out, 2), std::set<void*>({b[5], b[6]}));
  ASSERT_EQ(stack.Remove(out, 3), 3u);  // The rest of the primary, then a victim.
  EXPECT_EQ(AsSet(out, 2), std::set<void*>({b[3], b[4]}));
  EXPECT_EQ(out[2], b[2]);  // The most recent victim.
  EXPECT_EQ(stack.PrimaryCount(), 0u);
  EXPECT_EQ(stack.VictimCount(), 2u);
  ASSERT_EQ(stack.Remove(out, 8), 2u);  // What there is.
  EXPECT_EQ(AsSet(out, 2), std::set<void*>({b[0], b[1]}));
  EXPECT_EQ(stack.Remove(out, 8), 0u);
  EXPECT_TRUE(stack.LooksEmpty());
}

TEST(TransferStackTest, EachEpochDetachesTheVictimsAndDemotesThePrimary) {
  TransferStack stack;
  stack.Init(4);
  FakeBlocks b(8);
  const std::vector<void*> first = b.Range(0, 3);
  ASSERT_EQ(stack.Insert(first.data(), 3), 3u);
  uint32_t detached = 0;
  stack.ReturnSpare(stack.AgeDetach(&detached));
  EXPECT_EQ(detached, 0u);
  const std::vector<void*> second = b.Range(3, 5);
  ASSERT_EQ(stack.Insert(second.data(), 2), 2u);
  // A full primary generation again: the demotion left room for a whole capacity.
  const std::vector<void*> third = b.Range(5, 7);
  ASSERT_EQ(stack.Insert(third.data(), 2), 2u);

  void** retired = stack.AgeDetach(&detached);  // b0-b2 leave; b3-b6 become the victims.
  ASSERT_EQ(detached, 3u);
  EXPECT_EQ(AsSet(retired, 3), std::set<void*>({b[0], b[1], b[2]}));
  EXPECT_EQ(stack.VictimCount(), 4u);
  EXPECT_EQ(stack.PrimaryCount(), 0u);
  stack.ReturnSpare(retired);

  retired = stack.AgeDetach(&detached);  // Two epochs without use: everything has left.
  ASSERT_EQ(detached, 4u);
  EXPECT_EQ(AsSet(retired, 4), std::set<void*>({b[3], b[4], b[5], b[6]}));
  stack.ReturnSpare(retired);
  EXPECT_TRUE(stack.LooksEmpty());
}

TEST(TransferStackTest, TakeIfMovesThePickedBlocksAndKeepsTheOthersInOrder) {
  TransferStack stack;
  FakeBlocks b(8);
  FillBoth(stack, b, /*victims=*/4, /*primary=*/4);

  std::vector<void*> seen;
  stack.ForEachBlock([&](void* p) { seen.push_back(p); });
  EXPECT_EQ(seen, b.Range(0, 8));  // Victims, then the primary, each from the bottom.

  // Every even block, but room for three: b0 and b2 of the victims, then b4.
  auto even = [&](void* p) {
    return (static_cast<uint64_t*>(p) - static_cast<uint64_t*>(b[0])) % 2 == 0;
  };
  void* out[8] = {};
  ASSERT_EQ(stack.TakeIf(even, out, 3), 3u);
  EXPECT_EQ(std::vector<void*>(out, out + 3), std::vector<void*>({b[0], b[2], b[4]}));
  EXPECT_EQ(stack.VictimCount(), 2u);
  EXPECT_EQ(stack.PrimaryCount(), 3u);
  seen.clear();
  stack.ForEachBlock([&](void* p) { seen.push_back(p); });
  EXPECT_EQ(seen, std::vector<void*>({b[1], b[3], b[5], b[6], b[7]}));
}

// Protocol: each worker starts with blocks of its own, and moves batches into the stack
// (Insert(), keeping what it did not take) and out of it (Remove()); an epoch thread runs
// AgeDetach() and ReturnSpare() and keeps what they detach. At every moment a block is in one
// place: a worker's hand, the stack, or the epoch thread's hand. At the end every block is in
// exactly one of them.
TEST(TransferStackTest, ConcurrentBatchesAndEpochsLoseAndDuplicateNothing) {
  constexpr uint32_t kCapacity = 64;
  constexpr size_t kBatch = 16;
  constexpr int kWorkers = 4;
  constexpr size_t kPerWorker = 256;
  TransferStack stack;
  stack.Init(kCapacity);
  FakeBlocks b(kWorkers * kPerWorker);
  std::vector<std::vector<void*>> hands(kWorkers);
  std::atomic<int> done{0};
  std::vector<void*> retired;
  uint64_t epochs = 0;
  std::thread epoch_thread([&] {
    while (done.load(std::memory_order_acquire) < kWorkers || epochs < 10) {
      uint32_t n = 0;
      void** slots = stack.AgeDetach(&n);
      retired.insert(retired.end(), slots, slots + n);
      stack.ReturnSpare(slots);
      ++epochs;
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kWorkers; ++t) {
    hands[t] = b.Range(t * kPerWorker, (t + 1) * kPerWorker);
    workers.emplace_back([&, t] {
      std::vector<void*>& hand = hands[t];
      std::mt19937 rng(t + 1);
      void* out[kBatch];
      for (int i = 0; i < kLayerRounds; ++i) {
        const size_t n = 1 + rng() % kBatch;
        if (hand.size() >= n && rng() % 2 == 0) {
          // Insert() takes the first k of what it is given: those leave the hand.
          const size_t from = hand.size() - n;
          const size_t k = stack.Insert(hand.data() + from, n);
          hand.erase(hand.begin() + static_cast<ptrdiff_t>(from),
                     hand.begin() + static_cast<ptrdiff_t>(from + k));
        } else {
          const size_t k = stack.Remove(out, n);
          hand.insert(hand.end(), out, out + k);
        }
      }
      done.fetch_add(1, std::memory_order_release);
    });
  }
  for (std::thread& w : workers) w.join();
  epoch_thread.join();

  std::vector<void*> left(2 * kCapacity);
  left.resize(stack.TakeAll(left.data()));
  EXPECT_TRUE(stack.LooksEmpty());
  EXPECT_GE(epochs, 10u);
  hands.push_back(retired);
  hands.push_back(left);
  EXPECT_EQ(b.WhereNotOnce(hands), "");  // None lost, none copied twice.
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
