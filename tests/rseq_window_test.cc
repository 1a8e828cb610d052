// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The load order of the restartable sequences (percpu_rseq.h): a pop or push that starts on a
// CPU after a remote operation has closed and fenced that CPU's cache, and then stalls inside
// its critical section until the operation has ended and reopened the cache, must not commit
// what it loaded before the stall. A fence restarts only the sequences running when it
// arrives, and an interrupt that does not reschedule restarts nothing, so only the order of
// the loads protects this case: open_capacity first.
//
// Built against //:syncpool_rseq_window_for_test, whose sequences, when armed, spin right
// after their first load of the stack, and whose remote operations call a hook right after
// the fence. The thread under test and the remote thread are pinned to two different CPUs.
// With the loads in the wrong order (the count first), the pop below hands out a block the
// drain has already released and leaves the emptied stack claiming four blocks, and the push
// commits a count of six over it. (A stalled sequence that the kernel restarts, because its
// thread was preempted, reads everything again and may then rightly succeed.)

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "src/block_cache.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/sweeper.h"
#include "tests/recording_releaser.h"

namespace syncpool {
namespace internal {
namespace {

constexpr size_t kBlockBytes = 64;
constexpr int kCachedBlocks = 5;

// The first two CPUs this process may run on, or {-1, -1}.
std::pair<int, int> TwoAllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return {-1, -1};
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(cpu, &set) && cpu < NumCpus()) cpus.push_back(cpu);
  }
  if (cpus.size() < 2) return {-1, -1};
  return {cpus[0], cpus[1]};
}

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0 && sched_getcpu() == cpu;
}

// The remote-operation hook: on the operation on column `g_target` while `g_hook_armed`, lets the
// thread under test start its sequence and waits until it stalls in the window.
std::atomic<int> g_target{-1};
std::atomic<bool> g_hook_armed{false};
std::atomic<bool> g_start{false};

void AfterFence(int column) {
  if (column != g_target.load() || !g_hook_armed.exchange(false)) return;
  g_rseq_window_armed.store(1);
  g_start.store(true);
  while (g_rseq_window_entered.load() == 0) {
  }
}

class RseqWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RseqUsable()) GTEST_SKIP() << "restartable sequences are not in use here";
    cpus_ = TwoAllowedCpus();
    if (cpus_.first < 0) GTEST_SKIP() << "needs two CPUs";
    g_rseq_window_armed.store(0);
    g_rseq_window_entered.store(0);
    g_rseq_window_go.store(0);
    g_start.store(false);
    g_target.store(-1);
    g_remote_after_fence_for_test = &AfterFence;
  }
  void TearDown() override {
    g_remote_after_fence_for_test = nullptr;
    g_rseq_window_armed.store(0);
    g_rseq_window_go.store(1);
  }

  // Fills the cache of the thread-under-test's CPU with kCachedBlocks blocks, then runs
  // `stalled_op` on that CPU so that it starts right after a Drain() on another CPU has fenced
  // the cache and resumes once the Drain() has returned.
  template <typename Op>
  void RunAcrossDrain(Op stalled_op) {
    std::atomic<bool> filled{false}, pinned_ok{true};
    std::thread local([&] {
      if (!PinTo(cpus_.first)) {
        pinned_ok.store(false);
        filled.store(true);
        return;
      }
      // Put() creates the CPU's cache on the first call; all five stay on this CPU.
      for (int i = 0; i < kCachedBlocks; ++i) {
        blocks_.push_back(::operator new(kBlockBytes));
        cache_.Put(0, blocks_.back());
      }
      EXPECT_EQ(cache_.Snapshot().primary_blocks, uint64_t{kCachedBlocks});
      // The column its sequences use: its CPU, or its concurrency id (SYNCPOOL_CPU_ID). Both
      // stay put while it spins here, pinned, beside one other running thread.
#if SYNCPOOL_HAVE_GLIBC_RSEQ  // elsewhere no sequence runs: SetUp() skipped the test
      g_target.store(static_cast<int>(RseqColumnId()));
#endif
      filled.store(true);
      while (!g_start.load()) {
      }
      stalled_op();
    });
    while (!filled.load()) {
    }
    if (pinned_ok.load()) {
      std::thread remote([&] {
        ASSERT_TRUE(PinTo(cpus_.second));
        g_hook_armed.store(true);
        cache_.Drain();
        EXPECT_FALSE(g_hook_armed.load()) << "the drain did not visit the CPU's cache";
        g_rseq_window_armed.store(0);
        g_rseq_window_go.store(1);
        g_start.store(true);  // In case the hook never ran: the local thread must not hang.
      });
      remote.join();
    }
    local.join();
    if (!pinned_ok.load()) GTEST_SKIP() << "could not pin a thread to CPU " << cpus_.first;
  }

  int TimesReleased(void* block) const { return releaser_.TimesReleased(0, block); }

  std::pair<int, int> cpus_{-1, -1};
  Sweeper sweeper_{Sweeper::Options::Manual()};
  testing::RecordingReleaser releaser_;
  BlockCache cache_{{kBlockBytes}, {8}, &releaser_, &sweeper_};
  std::vector<void*> blocks_;
};

TEST_F(RseqWindowTest, PopStalledAcrossADrainCommitsNothing) {
  void* got = reinterpret_cast<void*>(1);
  RunAcrossDrain([&] { got = cache_.TryGet(0); });
  ASSERT_EQ(g_rseq_window_entered.load() >= 1, true) << "the pop never reached the window";
  EXPECT_EQ(got, nullptr) << "the pop took a block from a stack the drain had emptied";
  if (got != nullptr) {
    EXPECT_EQ(TimesReleased(got), 0) << "and that block was released";
  }
  for (void* b : blocks_) EXPECT_EQ(TimesReleased(b), 1);
  EXPECT_EQ(cache_.Snapshot().cached_blocks(), 0u) << "a stale count was committed";
  // Released blocks belong to the releaser's record, not to the heap: free them once.
  for (void* b : blocks_) ::operator delete(b);
}

TEST_F(RseqWindowTest, PushStalledAcrossADrainCommitsNothing) {
  void* mine = ::operator new(kBlockBytes);
  bool kept = true;
  RunAcrossDrain([&] { kept = cache_.TryPut(0, mine); });
  ASSERT_EQ(g_rseq_window_entered.load() >= 1, true) << "the push never reached the window";
  // The push fails, unless the kernel restarted it during the stall (the thread was preempted)
  // after the drain had reopened the cache: then it pushed onto the emptied stack, rightly.
  // Either way the stack holds exactly what the push kept, and the drained blocks stay gone.
  for (void* b : blocks_) EXPECT_EQ(TimesReleased(b), 1);
  EXPECT_EQ(cache_.Snapshot().cached_blocks(), kept ? 1u : 0u)
      << "the push committed a stale count onto the stack the drain had emptied";
  cache_.Drain();
  for (void* b : blocks_) EXPECT_EQ(TimesReleased(b), 1) << "released again: a stale count";
  EXPECT_EQ(TimesReleased(mine), kept ? 1 : 0);
  for (void* b : blocks_) ::operator delete(b);
  ::operator delete(mine);
}

#if SYNCPOOL_RSEQ_FAST_PATH  // Elsewhere the batch sequences do not exist (SetUp() skips).
// The batch sequences (RseqPushBatch(), RseqPopBatchToMove()) load open_capacity first too:
// stalled across the drain, the push of a batch commits no count onto the emptied stack
// (unless restarted after the reopening, as above: then the stack holds exactly what it
// pushed), and the pop of a batch takes nothing.
TEST_F(RseqWindowTest, BatchPushStalledAcrossADrainCommitsNothing) {
  void* mine[3] = {::operator new(kBlockBytes), ::operator new(kBlockBytes),
                   ::operator new(kBlockBytes)};
  uint32_t pushed = 99;
  RunAcrossDrain([&] { pushed = RseqPushBatch(cache_.Row(0), mine, 3); });
  ASSERT_EQ(g_rseq_window_entered.load() >= 1, true) << "the push never reached the window";
  ASSERT_LE(pushed, 3u);
  for (void* b : blocks_) EXPECT_EQ(TimesReleased(b), 1);
  EXPECT_EQ(cache_.Snapshot().cached_blocks(), pushed)
      << "the batch committed a stale count onto the stack the drain had emptied";
  cache_.Drain();
  for (void* b : blocks_) EXPECT_EQ(TimesReleased(b), 1) << "released again: a stale count";
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(TimesReleased(mine[i]), i < pushed ? 1 : 0);
  for (void* b : blocks_) ::operator delete(b);
  for (void* b : mine) ::operator delete(b);
}

TEST_F(RseqWindowTest, BatchPopStalledAcrossADrainTakesNothing) {
  void* out[kCachedBlocks] = {};
  uint32_t popped = 99;
  RunAcrossDrain([&] { popped = RseqPopBatchToMove(cache_.Row(0), out, kCachedBlocks); });
  ASSERT_EQ(g_rseq_window_entered.load() >= 1, true) << "the pop never reached the window";
  EXPECT_EQ(popped, 0u) << "the pop took blocks from a stack the drain had emptied";
  for (void* b : blocks_) EXPECT_EQ(TimesReleased(b), 1);
  EXPECT_EQ(cache_.Snapshot().cached_blocks(), 0u) << "a stale count was committed";
  for (void* b : blocks_) ::operator delete(b);
}
#endif

}  // namespace
}  // namespace internal
}  // namespace syncpool
