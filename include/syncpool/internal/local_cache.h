// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/local_cache.h
// -----------------------------------------------------------------------------
//
// What the inline paths of Pool<T> and PoolResource read of their cache: where its stacks lie,
// whether it keeps a column per thread, and (for a pool that counts owned bytes) the
// per-thread counters. Not part of syncpool's API. The cache itself, its slow paths and its
// policy are src/block_cache.h; it hands out a LocalCache (BlockCache::local()) that the faces
// keep by value beside a pointer to it, so that a program that includes the public headers
// reads the inline paths and nothing else of the engine.

#ifndef SYNCPOOL_INTERNAL_LOCAL_CACHE_H_
#define SYNCPOOL_INTERNAL_LOCAL_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/config.h"
#include "absl/base/optimization.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/internal/thread_slots.h"

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
#include <sanitizer/asan_interface.h>
#endif

namespace syncpool {
namespace internal {

class BlockCache;  // src/block_cache.h

// Blocks that sit in a cache are poisoned for AddressSanitizer, so that a use after Put or
// deallocate is reported: poisoned when they enter a cache (before the push that publishes
// them, so no other thread can hold them yet), unpoisoned when a Get hands one out and before
// one is released (the releaser's upstream or destructor touches it). Nothing without ASan.
inline void PoisonCached(void* block, size_t bytes) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  ASAN_POISON_MEMORY_REGION(block, bytes);
#else
  static_cast<void>(block);
  static_cast<void>(bytes);
#endif
}
inline void* UnpoisonCached(void* block, size_t bytes) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  if (block != nullptr) ASAN_UNPOISON_MEMORY_REGION(block, bytes);
#else
  static_cast<void>(bytes);
#endif
  return block;
}

// A thread slot's count of owned bytes (BlockCache's CachePolicy::owned_bytes): a line each.
struct alignas(64) OwnedCount {
  std::atomic<int64_t> bytes;
};

// The out-of-line ends of LocalCache::AccountOwned() (src/block_cache_budget.cc).
void AccountOwnedSlow(BlockCache* cache, int64_t bytes);
void AddOwnedEstimate(BlockCache* cache, int64_t bytes);

class LocalCache {
 public:
  LocalCache() = default;

  // LocalCache::Row()
  //
  // Where the stacks of class `cls` lie in the cache's region: column `c`'s at Row(cls) +
  // (c << kClassStackShift).
  char* Row(size_t cls) const { return region_ + cls * class_stride_; }

  // LocalCache::per_thread()
  //
  // Whether the cache keeps a column per thread slot (thread_slots.h) instead of per CPU.
  bool per_thread() const { return per_thread_; }

  // LocalCache::uses_rseq()
  //
  // Whether the inline paths are restartable sequences (percpu_rseq.h); in the other modes
  // the sequences fail at once.
  bool uses_rseq() const { return rseq_; }

  // LocalCache::TryGetAt()
  //
  // The inline Get of class `cls` (its stacks at `row`): one restartable sequence on the
  // caller's CPU's primary generation, or in the per-thread mode the thread's column. Returns
  // nullptr whenever they cannot serve the call (an empty stack, the locked mode, a column not
  // created yet or closed by a remote operation, the sequences held closed); the caller then
  // calls the cache's GetSlow(), which counts the miss, if any.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* TryGetAt(size_t cls, char* row) const {
    void* block = nullptr;
#if SYNCPOOL_RSEQ_FAST_PATH
    // Outside the rseq mode, or with the sequences held closed, it fails at once (percpu_rseq.h).
    block = RseqPopPrimary(row);
#endif
    if (block == nullptr && per_thread_) block = ThreadPop(row);
    return UnpoisonCached(block, ClassBytes(cls));
  }

  // LocalCache::GetOr()
  //
  // `on_hit(TryGetAt(cls, row))` where that returns a block, else `otherwise()` (the caller's
  // slow path, in tail position): success costs no test of the block. kOffsets: see
  // RseqOffsets (percpu_rseq.h).
  template <RseqOffsets kOffsets = RseqOffsets::kInRegisters, typename OnHit, typename Otherwise>
  ABSL_ATTRIBUTE_ALWAYS_INLINE auto GetOr(size_t cls, char* row, OnHit on_hit,
                                          Otherwise otherwise) const {
#if SYNCPOOL_RSEQ_FAST_PATH && !defined(ABSL_HAVE_ADDRESS_SANITIZER)
    static_cast<void>(cls);
    // The sequence first, so that the rseq mode's hit path is exactly the sequence; it fails
    // at once in the other modes.
    // (The fallback captures by value: captured by reference, the caller's lambdas would be
    // stored to the stack on every call, hit or not.)
    return RseqPopPrimaryOr<kOffsets>(row, on_hit, [this, row, on_hit, otherwise] {
      if (per_thread_) {
        if (void* block = ThreadPop(row); ABSL_PREDICT_TRUE(block != nullptr)) {
          return on_hit(block);
        }
      }
      return otherwise();
    });
#else
    if (void* block = TryGetAt(cls, row); block != nullptr) return on_hit(block);
    return otherwise();
#endif
  }
  template <RseqOffsets kOffsets = RseqOffsets::kInRegisters, typename Otherwise>
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* GetOr(size_t cls, char* row, Otherwise otherwise) const {
    return GetOr<kOffsets>(cls, row, [](void* block) { return block; }, otherwise);
  }

  // LocalCache::TryPutAt()
  //
  // The inline Put of `block` of class `cls` (its stacks at `row`). Returns false, keeping
  // nothing, whenever it cannot cache the block (as TryGetAt(), or a full stack); the caller
  // then calls the cache's PutSlow(). kOffsets: see RseqOffsets.
  template <RseqOffsets kOffsets = RseqOffsets::kInRegisters>
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryPutAt(size_t cls, char* row, void* block) const {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
    PoisonCached(block, ClassBytes(cls));  // Also for PutSlow(), which callers call next.
#endif
    static_cast<void>(cls);
#if SYNCPOOL_RSEQ_FAST_PATH
    if (ABSL_PREDICT_TRUE(RseqPush<kOffsets>(row, block))) return true;
#endif
    return per_thread_ && ThreadPush(row, block);
  }

  // LocalCache::AccountOwned()
  //
  // For a cache with CachePolicy::owned_bytes: `bytes` more (an object about to be handed to
  // Put()) or fewer (a negative figure: an object a Get() returned) are cached; releases count
  // themselves. Protocol: each thread adds to its own counter (indexed by its thread slot,
  // thread_slots.h) with a plain load and store, no read-modify-write: only the slot's owner
  // writes it, and a slot passes to another thread through the registry's lock. A counter that
  // strays beyond owned_flush_ either way moves to the cache's estimate (one fetch_add), which
  // the budgets read; the cache's CachedBytes() adds every counter to it. A thread without a
  // slot adds to the estimate directly.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void AccountOwned(int64_t bytes) const {
    const uint32_t slot = tls_thread_slot;
    if (ABSL_PREDICT_FALSE(slot == 0)) {
      AccountOwnedSlow(cache_, bytes);
      return;
    }
    std::atomic<int64_t>& count = owned_[slot].bytes;
    const int64_t v = count.load(std::memory_order_relaxed) + bytes;
    if (ABSL_PREDICT_FALSE(v > owned_flush_ || v < -owned_flush_)) {
      count.store(0, std::memory_order_relaxed);
      AddOwnedEstimate(cache_, v);
      return;
    }
    count.store(v, std::memory_order_relaxed);
  }

 private:
  friend class BlockCache;

  LocalCache(BlockCache* cache, char* region, size_t class_stride, bool rseq, bool per_thread,
             const size_t* class_bytes, OwnedCount* owned, int64_t owned_flush)
      : cache_(cache),
        region_(region),
        class_stride_(class_stride),
        rseq_(rseq),
        per_thread_(per_thread),
        class_bytes_(class_bytes),
        owned_(owned),
        owned_flush_(owned_flush) {}

  size_t ClassBytes(size_t cls) const {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
    return class_bytes_[cls];
#else
    static_cast<void>(cls);
    return 0;  // Read by the poisoning only.
#endif
  }

  BlockCache* cache_ = nullptr;
  // The region of ClassStacks: a row per class, in each 128 bytes per column (a CPU id, or in
  // the per-thread mode a thread slot). Owned by the cache.
  char* region_ = nullptr;
  size_t class_stride_ = 0;  // Columns << kClassStackShift.
  bool rseq_ = false;
  bool per_thread_ = false;
  const size_t* class_bytes_ = nullptr;  // Per class (for AddressSanitizer).
  OwnedCount* owned_ = nullptr;  // Per thread slot, where owned bytes are counted.
  int64_t owned_flush_ = 0;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_LOCAL_CACHE_H_
