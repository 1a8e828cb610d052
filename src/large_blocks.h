// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The blocks a PoolResource holds from its upstream outside its spans: those of its classes
// above 4 KiB and the requests it passes straight upstream. Each is recorded when it is taken
// from upstream and erased when it goes back, so that the resource can return the ones still
// handed out at its destruction or release(), as the std::pmr pools do, and can tell a block
// it did not take (or took with another size) when one comes back.
//
// Protocol: the records are split over kShards maps by address, each under its own lock; a
// block's record is touched only under its shard's lock. Add() and Remove() run on the slow
// paths only (with an upstream call beside each), never for a block served from or returned
// to a cache.

#ifndef SYNCPOOL_SRC_LARGE_BLOCKS_H_
#define SYNCPOOL_SRC_LARGE_BLOCKS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "src/spinlock.h"

namespace syncpool {
namespace internal {

class LargeBlocks {
 public:
  struct Block {
    size_t bytes;
    size_t alignment;
  };
  // How the blocks left at ReleaseAll() go back: `give_back(context, p, bytes, alignment)`.
  using GiveBackFn = void (*)(void* context, void* p, size_t bytes, size_t alignment);

  LargeBlocks(GiveBackFn give_back, void* context) : give_back_(give_back), context_(context) {}
  LargeBlocks(const LargeBlocks&) = delete;
  LargeBlocks& operator=(const LargeBlocks&) = delete;

  // Gives back every block still recorded (ReleaseAll()).
  ~LargeBlocks() { ReleaseAll(); }

  // Records `p`, just taken from upstream. Throws std::bad_alloc, recording nothing, when the
  // map cannot grow.
  void Add(void* p, size_t bytes, size_t alignment);

  // Erases the record of `p` into `*block`; false when there is none (a block the resource did
  // not take from upstream, or one it gave back already).
  bool Remove(void* p, Block* block);

  // Gives back every recorded block and forgets it; returns their bytes. REQUIRES: no other
  // thread uses the resource meanwhile.
  uint64_t ReleaseAll();

  // How many blocks, and bytes, are recorded now (approximate while they change).
  uint64_t blocks() const;
  uint64_t bytes() const;

  // Around fork(): every shard's lock (Sweepable::LockForFork()).
  void LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS;

 private:
  static constexpr size_t kShards = 16;
  struct alignas(64) Shard {
    mutable SpinLock lock;
    // A node-based map: a single insertion that throws (std::bad_alloc) leaves it unchanged.
    // Abseil's flat maps of the packaged version do not give that guarantee (a failed growth
    // leaves the table inconsistent), and these maps grow on paths that must survive it.
    std::unordered_map<void*, Block> blocks ABSL_GUARDED_BY(lock);
    uint64_t bytes ABSL_GUARDED_BY(lock) = 0;
  };
  Shard& ShardOf(const void* p);

  const GiveBackFn give_back_;
  void* const context_;
  std::array<Shard, kShards> shards_;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_LARGE_BLOCKS_H_
