// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The per-thread mode's protocol (thread_slots.h), one step at a time, deterministically.
//
// Built against //:syncpool_rseq_window_for_test, whose per-thread inline operations, when
// armed, stall at a chosen point, and whose remote operations call hooks after the fence,
// while they wait for the owner, and before their work. A thread (the owner) caches four
// blocks in its column, then starts a Get that stalls; the test thread drains the cache (a
// remote operation on that column) and the hooks release the owner at the moment under test.
//   - Inside: the owner stalls after reading the column open. The remote operation must see
//     it busy after the fence (step 1 of the protocol), and must not start its work until
//     the owner has left (the wait): without either, the drain releases the block the owner
//     is taking, and the owner then commits a count over the emptied stack.
//   - Starting: the owner stalls before it marks itself busy, and runs its whole inline
//     operation during the remote operation. It must read the column closed and change
//     nothing (step 3): without that check it pops a block the drain is about to release.

#include <atomic>
#include <cstdint>
#include <thread>

#include "gtest/gtest.h"
#include "src/block_cache.h"
#include "src/thread_slots.h"
#include "syncpool/options.h"
#include "syncpool/sweeper.h"
#include "tests/recording_releaser.h"

namespace syncpool {
namespace internal {
namespace {

constexpr size_t kBlockBytes = 64;
constexpr int kCachedBlocks = 4;

// What the hooks see and do, for the column of g_slot only.
std::atomic<int> g_slot{-1};
std::atomic<uint32_t> g_busy_at_fence{99};
std::atomic<bool> g_owner_left_before_op{false};
std::atomic<uint32_t> g_count_before_op{99};
char* g_row = nullptr;

ClassStack& OwnerStack() {
  return *reinterpret_cast<ClassStack*>(g_row + (size_t(g_slot.load()) << kClassStackShift));
}

void RecordBusyAtFence(int slot) {
  if (slot == g_slot.load()) g_busy_at_fence.store(OwnerStack().busy.load());
}

void ReleaseOwnerWhileWaiting(int slot) {
  if (slot == g_slot.load()) g_thread_window_go.store(1);
}

// Inside: the owner must have left before the work starts. (Release it anyway, so that a
// broken protocol fails the test instead of hanging it.)
void CheckOwnerLeft(int slot) {
  if (slot != g_slot.load()) return;
  g_owner_left_before_op.store(g_thread_window_left.load() == 1);
  g_thread_window_go.store(1);
}

// Starting: let the owner run its inline operation now, wait until it has left, and record
// what the column holds then.
void RunOwnerThenCount(int slot) {
  if (slot != g_slot.load()) return;
  g_thread_window_go.store(1);
  while (g_thread_window_left.load() == 0) {
  }
  g_count_before_op.store(OwnerStack().primary_count.load());
}

class ThreadWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_thread_window_point.store(-1);
    g_thread_window_entered.store(0);
    g_thread_window_go.store(0);
    g_thread_window_left.store(0);
    g_busy_at_fence.store(99);
    g_owner_left_before_op.store(false);
    g_count_before_op.store(99);
    g_slot.store(-1);
  }
  void TearDown() override {
    g_remote_after_fence_for_test = nullptr;
    g_remote_waiting_for_test = nullptr;
    g_remote_before_op_for_test = nullptr;
    g_thread_window_point.store(-1);
  }

  // Runs the owner on its own thread: caches kCachedBlocks blocks, arms `point`, and Gets
  // (stalling there) while this thread drains the cache; returns what the Get returned.
  void* RunOwnerAcrossADrain(BlockCache& cache, int point) {
    void* got = reinterpret_cast<void*>(1);
    RunAcrossADrain(cache, point, kCachedBlocks, [&] { got = cache.Get(0); });
    return got;
  }

  // Runs the owner on its own thread: Puts the first `cached` blocks one at a time, arms
  // `point`, and runs `op` (which stalls there) while this thread drains the cache.
  template <typename Op>
  void RunAcrossADrain(BlockCache& cache, int point, int cached, Op op) {
    g_row = cache.Row(0);
    std::atomic<bool> ready{false};
    std::thread owner([&] {
      for (int i = 0; i < cached; ++i) cache.Put(0, storage_[i]);
      g_slot.store(static_cast<int>(tls_thread_slot));
      g_thread_window_point.store(point);
      ready.store(true);
      op();
    });
    while (!ready.load() || g_thread_window_entered.load() == 0) {
    }
    cache.Drain();  // From here the hooks run the owner.
    owner.join();
  }

  int TimesReleased(int i) { return releaser_.TimesReleased(0, storage_[i]); }

  Sweeper sweeper_{Sweeper::Options::Manual()};
  testing::RecordingReleaser releaser_;
  alignas(64) char storage_[kCachedBlocks][kBlockBytes] = {};
};

BlockCache MakeCache(testing::RecordingReleaser* releaser, Sweeper* sweeper) {
  CachePolicy policy;
  policy.mode = CacheMode::kPerThread;
  return BlockCache({kBlockBytes}, {8}, releaser, sweeper, /*allow_rseq=*/true, policy);
}

TEST_F(ThreadWindowTest, AnOwnerInsideItsOperationMakesTheRemoteOperationWait) {
  BlockCache cache = MakeCache(&releaser_, &sweeper_);
  if (!cache.per_thread()) GTEST_SKIP() << "no per-thread mode here: " << cache.mode().why;
  g_remote_after_fence_for_test = &RecordBusyAtFence;
  g_remote_waiting_for_test = &ReleaseOwnerWhileWaiting;
  g_remote_before_op_for_test = &CheckOwnerLeft;
  void* got = RunOwnerAcrossADrain(cache, /*point=*/1);
  EXPECT_EQ(g_busy_at_fence.load(), 1u) << "the owner inside did not read as busy";
  EXPECT_TRUE(g_owner_left_before_op.load()) << "the remote work began with the owner inside";
  // The owner took the top block; the drain released the other three, each once.
  EXPECT_EQ(got, storage_[kCachedBlocks - 1]);
  for (int i = 0; i < kCachedBlocks; ++i) {
    EXPECT_EQ(TimesReleased(i), i == kCachedBlocks - 1 ? 0 : 1) << i;
  }
  EXPECT_EQ(cache.Snapshot().cached_blocks(), 0u);
}

TEST_F(ThreadWindowTest, AnOwnerStartingDuringARemoteOperationReadsTheColumnClosed) {
  BlockCache cache = MakeCache(&releaser_, &sweeper_);
  if (!cache.per_thread()) GTEST_SKIP() << "no per-thread mode here: " << cache.mode().why;
  g_remote_after_fence_for_test = &RecordBusyAtFence;
  g_remote_before_op_for_test = &RunOwnerThenCount;
  void* got = RunOwnerAcrossADrain(cache, /*point=*/0);
  EXPECT_EQ(g_busy_at_fence.load(), 0u);
  EXPECT_EQ(g_count_before_op.load(), static_cast<uint32_t>(kCachedBlocks))
      << "the owner's inline operation changed a closed column";
  // The drain released all four; the owner's Get then found nothing (a miss).
  EXPECT_EQ(got, nullptr);
  for (int i = 0; i < kCachedBlocks; ++i) EXPECT_EQ(TimesReleased(i), 1) << i;
}

// A batch push (a refill's blocks, BlockCache::PutBatch()) is one owner's operation: stalled
// after reading the column open, it makes the drain wait, and its one store of the count
// commits every block it copied, so the drain that follows releases each block once. Without
// the wait the drain releases the two cached blocks and the owner's commit then publishes four
// slots over an emptied stack (two released blocks cached again).
TEST_F(ThreadWindowTest, ABatchPushInsideItsOperationMakesTheRemoteOperationWait) {
  BlockCache cache = MakeCache(&releaser_, &sweeper_);
  if (!cache.per_thread()) GTEST_SKIP() << "no per-thread mode here: " << cache.mode().why;
  g_remote_after_fence_for_test = &RecordBusyAtFence;
  g_remote_waiting_for_test = &ReleaseOwnerWhileWaiting;
  g_remote_before_op_for_test = &CheckOwnerLeft;
  void* const batch[] = {storage_[2], storage_[3]};
  RunAcrossADrain(cache, /*point=*/1, /*cached=*/2, [&] { cache.PutBatch(0, batch, 2); });
  EXPECT_EQ(g_busy_at_fence.load(), 1u) << "the owner inside did not read as busy";
  EXPECT_TRUE(g_owner_left_before_op.load()) << "the remote work began with the owner inside";
  for (int i = 0; i < kCachedBlocks; ++i) EXPECT_EQ(TimesReleased(i), 1) << i;
  EXPECT_EQ(cache.Snapshot().cached_blocks(), 0u);
}

// A batch push that starts during the drain reads the column closed and copies nothing; the
// blocks then take the slow path, which runs after the drain (cached, or released there).
TEST_F(ThreadWindowTest, ABatchPushStartingDuringARemoteOperationReadsTheColumnClosed) {
  BlockCache cache = MakeCache(&releaser_, &sweeper_);
  if (!cache.per_thread()) GTEST_SKIP() << "no per-thread mode here: " << cache.mode().why;
  g_remote_after_fence_for_test = &RecordBusyAtFence;
  g_remote_before_op_for_test = &RunOwnerThenCount;
  void* const batch[] = {storage_[2], storage_[3]};
  RunAcrossADrain(cache, /*point=*/0, /*cached=*/2, [&] { cache.PutBatch(0, batch, 2); });
  EXPECT_EQ(g_busy_at_fence.load(), 0u);
  EXPECT_EQ(g_count_before_op.load(), 2u) << "the owner's batch push changed a closed column";
  // The drain released the two cached blocks; the batch's were cached or released after it,
  // each once.
  EXPECT_EQ(TimesReleased(0), 1);
  EXPECT_EQ(TimesReleased(1), 1);
  EXPECT_EQ(TimesReleased(2) + TimesReleased(3) + cache.Snapshot().cached_blocks(), 2u);
  cache.Drain();
  for (int i = 0; i < kCachedBlocks; ++i) EXPECT_EQ(TimesReleased(i), 1) << i;
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
