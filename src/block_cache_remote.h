// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// BlockCache::Remote(), the remote operation (block_cache.h says what it guarantees), for the
// files of the cache layer that use it. Private to src/.

#ifndef SYNCPOOL_SRC_BLOCK_CACHE_REMOTE_H_
#define SYNCPOOL_SRC_BLOCK_CACHE_REMOTE_H_

#include <sched.h>

#include "src/block_cache.h"

namespace syncpool {
namespace internal {

template <typename Op>
auto BlockCache::Remote(int cpu, CpuCache* c, Op op, bool reopen) {
  SpinLockHolder l(&c->lock);
  if (mode_.rseq) {
    // Close, then fence: once FenceColumn() returns, no sequence that read an open capacity
    // before the close is still running on `cpu`, so the cache is ours until it is reopened.
    c->CloseToSequences();
    FenceColumn(cpu);
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_remote_after_fence_for_test != nullptr) g_remote_after_fence_for_test(cpu);
#endif
  }
  if (mode_.per_thread) {
    // Close, fence, then wait for an owner that read the column open before the close to
    // leave its operation (thread_slots.h): the column is then ours until it is reopened.
    c->CloseToSequences();
    FenceAllThreads();
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_remote_after_fence_for_test != nullptr) g_remote_after_fence_for_test(cpu);
#endif
    for (int spins = 0; c->AnyBusy(); ++spins) {
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
      if (g_remote_waiting_for_test != nullptr) g_remote_waiting_for_test(cpu);
#endif
      if (spins >= 64) sched_yield();  // The owner was preempted inside: let it run.
    }
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_remote_before_op_for_test != nullptr) g_remote_before_op_for_test(cpu);
#endif
  }
  auto result = op(c);  // Moves pointers only: cannot throw.
  if (reopen && (mode_.rseq || mode_.per_thread)) c->OpenToSequences();
  return result;
}

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_BLOCK_CACHE_REMOTE_H_
