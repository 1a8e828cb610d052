// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of SpinLock (spinlock.h), the lock of the per-CPU caches' locked path: it excludes, a
// holder's writes are seen by the next holder, SpinLockHolder holds it for a scope, and
// AssertHeld() checks (with assertions on) that someone holds it.

#include "src/spinlock.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace syncpool {
namespace internal {
namespace {

// The lock and what it guards.
struct Guarded {
  SpinLock lock;
  uint64_t count ABSL_GUARDED_BY(lock) = 0;
  // Holders inside their critical section now: never more than one.
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
};

// Adds 1 to `g->count` `n` times, each time under the lock, with a read-modify-write spread
// over a few instructions so that two holders at once would lose increments.
void Increment(Guarded* g, int n) {
  for (int i = 0; i < n; ++i) {
    SpinLockHolder l(&g->lock);
    if (g->inside.fetch_add(1, std::memory_order_relaxed) != 0) {
      g->overlaps.fetch_add(1, std::memory_order_relaxed);
    }
    const uint64_t seen = g->count;
    if (i % 64 == 0) std::this_thread::yield();  // A holder preempted inside: waiters yield.
    g->count = seen + 1;
    g->inside.fetch_sub(1, std::memory_order_relaxed);
  }
}

TEST(SpinLockTest, LockUnlockAndHolder) {
  Guarded g;
  g.lock.Lock();
  g.lock.AssertHeld();
  g.count = 1;
  g.lock.Unlock();
  {
    SpinLockHolder l(&g.lock);
    g.lock.AssertHeld();
    EXPECT_EQ(g.count, 1u);
    g.count = 2;
  }
  // The holder released it: the lock is free again, and Lock() takes it at once.
  g.lock.Lock();
  EXPECT_EQ(g.count, 2u);
  g.lock.Unlock();
}

// Protocol: more threads than CPUs each add to one counter under the lock; a holder yields
// inside now and then, so that the others wait on a preempted holder (the slow path's spin and
// yield). Every increment survives, and no two holders are ever inside at once.
TEST(SpinLockTest, ExcludesUnderContention) {
  Guarded g;
  const int threads = 2 * static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
#ifdef SYNCPOOL_SANITIZER
  constexpr int kPerThread = 5000;
#else
  constexpr int kPerThread = 50000;
#endif
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back(Increment, &g, kPerThread);
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(g.overlaps.load(), 0);
  SpinLockHolder l(&g.lock);
  EXPECT_EQ(g.count, static_cast<uint64_t>(threads) * kPerThread);
}

// Protocol: a writer fills a buffer and publishes a flag, both under the lock; a reader that
// sees the flag under the lock sees the whole buffer (Unlock() releases, Lock() acquires).
TEST(SpinLockTest, WritesOfOneHolderAreSeenByTheNext) {
  SpinLock lock;
  uint64_t data[16] = {};
  bool ready = false;
  std::thread writer([&] {
    SpinLockHolder l(&lock);
    for (uint64_t i = 0; i < 16; ++i) data[i] = i + 1;
    ready = true;
  });
  for (;;) {
    SpinLockHolder l(&lock);
    if (!ready) continue;
    for (uint64_t i = 0; i < 16; ++i) EXPECT_EQ(data[i], i + 1);
    break;
  }
  writer.join();
}

#ifndef NDEBUG
TEST(SpinLockDeathTest, AssertHeldFailsWhenNobodyHoldsIt) {
  SpinLock lock;
  EXPECT_DEATH(lock.AssertHeld(), "locked_");
}
#endif

}  // namespace
}  // namespace internal
}  // namespace syncpool
