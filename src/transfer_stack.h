// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/transfer_stack.h
// -----------------------------------------------------------------------------
//
// The shared layer of a BlockCache: for one size class, blocks that a CPU's full cache gave
// away and that any CPU whose cache ran dry may take, in batches, two generations like the
// per-CPU stacks. Not part of syncpool's API.
//
// It exists so that blocks move between CPUs without touching another CPU's cache: a CPU
// whose cache is full moves a batch here, and a CPU whose cache is empty takes a batch from
// here, each under this stack's lock and never another CPU's (see block_cache.h).
//
// Thread safety: every member but the racy counts takes `lock_`; the lock is held only to copy
// pointers, and never together with a CPU cache's lock or while a cache is closed.

#ifndef SYNCPOOL_SRC_TRANSFER_STACK_H_
#define SYNCPOOL_SRC_TRANSFER_STACK_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "src/slot_array.h"
#include "src/spinlock.h"

namespace syncpool {
namespace internal {

class TransferStack {
 public:
  TransferStack() = default;
  TransferStack(const TransferStack&) = delete;
  TransferStack& operator=(const TransferStack&) = delete;

  // TransferStack::Init()
  //
  // Gives the stack room for `capacity` blocks per generation. Called once, before any other
  // member, by the owner's constructor (may throw std::bad_alloc).
  void Init(uint32_t capacity);

  // TransferStack::Insert()
  //
  // Adds up to `n` of `blocks` (the first ones) to the primary generation and returns how many
  // it took; the caller keeps the others (the stack is full).
  size_t Insert(void* const* blocks, size_t n);

  // TransferStack::Remove()
  //
  // Moves up to `n` blocks to `out`: the top of the primary generation (its most recently
  // inserted blocks), then, if that held fewer, the top of the victim one; each run in stack
  // order, bottom to top. Returns how many.
  size_t Remove(void** out, size_t n);

  // TransferStack::AgeDetach()
  //
  // The epoch step, in constant time under the lock: detaches the victim generation's array
  // (returned, its count in `*detached`) and makes the primary generation the victim and the
  // spare array the primary. The caller releases the detached blocks with no lock held, then
  // hands the array back with ReturnSpare(). REQUIRES: ReturnSpare() followed the last
  // AgeDetach().
  void** AgeDetach(uint32_t* detached);
  void ReturnSpare(void** slots);

  // TransferStack::TakeAll()
  //
  // Copies both generations to `out` (room for 2 * capacity() blocks), the primary's then the
  // victim's, each from bottom to top, and empties them.
  size_t TakeAll(void** out);

  // TransferStack::ForEachBlock(), TransferStack::TakeIf()
  //
  // As CpuCache's, over both generations, each under the stack's lock: `fn(block)` for every
  // block, and the move to `out` (at most `room`) of those `take(block)` picks, the others
  // staying in their generation in their order. Returns how many blocks were moved.
  template <typename Fn>
  void ForEachBlock(Fn fn) {
    SpinLockHolder l(&lock_);
    const uint32_t victims = victim_count_.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < victims; ++i) fn(victim_[i]);
    const uint32_t primary = primary_count_.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < primary; ++i) fn(primary_[i]);
  }
  template <typename Take>
  size_t TakeIf(Take take, void** out, size_t room) {
    SpinLockHolder l(&lock_);
    size_t moved = 0;
    victim_count_.store(TakeFromSlots(victim_, victim_count_.load(std::memory_order_relaxed),
                                      take, out, room, &moved),
                        std::memory_order_relaxed);
    primary_count_.store(TakeFromSlots(primary_, primary_count_.load(std::memory_order_relaxed),
                                       take, out, room, &moved),
                         std::memory_order_relaxed);
    return moved;
  }

  // Around fork(): fork.h, rank kSweepers. (Taken in one, released in the other: beyond
  // what the analysis follows.)
  void LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { lock_.Lock(); }
  void UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { lock_.Unlock(); }

  // Whether it holds nothing, read under its lock: exact when it is read, and ordered with the
  // operations before and after (the locked mode's park, BlockCache::Park()).
  bool Empty() {
    SpinLockHolder l(&lock_);
    return LooksEmpty();
  }

  // Racy reads for statistics and probes.
  uint32_t PrimaryCount() const { return primary_count_.load(std::memory_order_relaxed); }
  uint32_t VictimCount() const { return victim_count_.load(std::memory_order_relaxed); }
  bool LooksEmpty() const { return PrimaryCount() == 0 && VictimCount() == 0; }

  uint32_t capacity() const { return capacity_; }

 private:
  SpinLock lock_;
  // Written under lock_ only; atomic so that the racy reads above are well defined.
  std::atomic<uint32_t> primary_count_{0};
  std::atomic<uint32_t> victim_count_{0};
  uint32_t capacity_ = 0;                 // Immutable after Init().
  std::unique_ptr<void*[]> slots_;  // 3 * capacity_ slots: both generations and the spare.
  void** primary_ ABSL_GUARDED_BY(lock_) = nullptr;
  void** victim_ ABSL_GUARDED_BY(lock_) = nullptr;
  void** spare_ ABSL_GUARDED_BY(lock_) = nullptr;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_TRANSFER_STACK_H_
