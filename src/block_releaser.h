// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/block_releaser.h
// -----------------------------------------------------------------------------
//
// How a BlockCache gives blocks back (BlockReleaser: to an upstream resource, or by destroying
// objects). Not part of syncpool's API.

#ifndef SYNCPOOL_SRC_BLOCK_RELEASER_H_
#define SYNCPOOL_SRC_BLOCK_RELEASER_H_

#include <cstddef>
#include <cstdint>


namespace syncpool {
namespace internal {

class SweepPacer;  // src/sweepable.h

// How a cache gives blocks back: to an upstream resource, or by destroying objects.
class BlockReleaser {
 public:
  // BlockReleaser::Release()
  //
  // Releases `n` blocks of class `cls`. Called without any cache lock held, on the thread that
  // sweeps, spills or drains.
  virtual void Release(size_t cls, void* const* blocks, size_t n) = 0;

  // BlockReleaser::OwnedBytes()
  //
  // For a cache that counts what its blocks own (CachePolicy::owned_bytes): the bytes `block`
  // of class `cls` owns, constant while it sits in the cache. Called on blocks about to be
  // released, and by the epoch that chooses what to release for the budgets, under the
  // column's lock (so it must not take locks or allocate).
  virtual uint64_t OwnedBytes(size_t /*cls*/, const void* /*block*/) { return 0; }

  // BlockReleaser::ReleaseIdle()
  //
  // Gives back what the releaser itself keeps and nobody uses (a PoolResource's wholly free
  // spans), at the end of every epoch and drain. `everything`: all of it (a drain, a sweep
  // under pressure); otherwise what also went unused since the previous epoch, so that a
  // workload that frees and rebuilds a structure between two epochs keeps its memory. Called
  // without any cache lock held; `pacer` (the sweep's, nullptr in a drain): its Pause() may be
  // called between pieces of the work, with none of the releaser's locks held.
  virtual void ReleaseIdle(bool /*everything*/, SweepPacer* /*pacer*/) {}

  // BlockReleaser::LockForFork(), BlockReleaser::UnlockAfterFork()
  //
  // Take and release the releaser's own locks around fork() (fork.h, rank kSweepers).
  virtual void LockForFork() {}
  virtual void UnlockAfterFork() {}

 protected:
  ~BlockReleaser() = default;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_BLOCK_RELEASER_H_
