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
//
// The per-thread mode's columns, and the owner's operations on them (ThreadPop(), ThreadPush(),
// ThreadPushBatch()). Used where the restartable sequences are not (glibc registered no rseq
// area, valgrind, ThreadSanitizer, SYNCPOOL_RSEQ=0, other architectures): a cache then keeps
// one column of ClassStacks per thread instead of per CPU, and the thread that owns a column
// pushes and pops on it without an atomic read-modify-write and without a system call. A
// thread's column is named by its slot (tls_thread_slot; taking and giving back slots:
// thread_slots.h).
//
// Protocol (owner: the thread whose slot names the column; remote: any other thread, which
// holds the column's CpuCache lock: the sweeper's epochs, drains, thread-exit flushes):
//   - The owner's operation on class c (ThreadPop(), ThreadPush(), ThreadPushBatch()):
//       1. busy = 1 (a plain store);
//       2. a fence: only a compiler barrier where the process can make an asymmetric fence
//          (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)), a full fence under ThreadSanitizer;
//       3. read owner_open (acquire); it bounds the count as open_capacity does for the
//          sequences: 0 (closed) fails every pop and push;
//       4. work on the stack: read the count, move one slot (a batch: several), store the
//          count;
//       5. busy = 0 (release).
//   - A remote operation: takes the lock, closes the column (owner_open = 0 for every class),
//     makes the fence (FenceAllThreads()), then waits until busy reads 0 in every class,
//     works, reopens (owner_open = capacity, release), unlocks.
//   - Why it is safe: after the fence, either the owner's store of busy = 1 (step 1) is
//     visible to the remote thread, which then waits for step 5, or the owner's read of
//     owner_open (step 3) comes after the fence and sees the close, so it touches nothing.
//     (The fence runs a full barrier on every thread of the process that is running: a
//     store made before it is visible after it, and a load made after it sees what was
//     stored before the remote thread entered it.) Under ThreadSanitizer both sides use
//     sequentially consistent operations instead, which the C++ memory model orders the same
//     way, so the tool checks the protocol itself.
//   - The owner's slow path takes the same lock and works with the locked methods of
//     CpuCache: its inline operations are not running then (it is the same thread), and the
//     lock keeps remote operations out.
//   - An owner preempted between steps 1 and 5 makes a remote operation wait for it (yielding
//     the CPU): it runs again, since nothing it needs is held by the remote thread. (Where a
//     sequence would be aborted, an owner here is waited for; its steps are a few
//     instructions, so a wait is rare and ends when the owner is next scheduled.)
//   - fork(): the child has only the forking thread. Every other slot becomes free, and every
//     busy flag is cleared (a thread that was between steps 1 and 5 in the parent does not
//     exist in the child; its step 4 commits with one store of the count, so the stack is
//     whole either way).

#ifndef SYNCPOOL_INTERNAL_LOCAL_CACHE_H_
#define SYNCPOOL_INTERNAL_LOCAL_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/config.h"
#include "absl/base/optimization.h"
#include "syncpool/internal/percpu_abi.h"
#include "syncpool/internal/percpu_rseq.h"

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
#include <sanitizer/asan_interface.h>
#endif

#if defined(ABSL_HAVE_THREAD_SANITIZER)
#define SYNCPOOL_THREAD_FULL_FENCE 1
#else
#define SYNCPOOL_THREAD_FULL_FENCE 0
#endif

namespace syncpool {
namespace internal {

class BlockCache;  // src/block_cache.h

// Columns of a per-thread cache: slots 1 to kThreadSlots - 1, and the column 0 that never opens.
inline constexpr uint32_t kThreadSlots = 1024;

// The calling thread's slot, 0 when it has none (yet). Initial-exec: one load from the thread
// pointer.
extern __thread uint32_t tls_thread_slot __attribute__((tls_model("initial-exec")));

// Hook points of the owner's operations (at 0: before step 1; 1: after step 3, before the
// count is read; and after step 5): empty unless the build defines them before this header.
#ifndef SYNCPOOL_SLOT_HOOK
#define SYNCPOOL_SLOT_HOOK(point) static_cast<void>(0)
#define SYNCPOOL_SLOT_LEFT_HOOK() static_cast<void>(0)
#endif

// The owner's steps 1 and 2, and 5.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void ThreadEnter(ClassStack& s) {
  SYNCPOOL_SLOT_HOOK(0);
#if SYNCPOOL_THREAD_FULL_FENCE
  s.busy.store(1, std::memory_order_seq_cst);
#else
  s.busy.store(1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline uint32_t ThreadOpenCapacity(const ClassStack& s) {
#if SYNCPOOL_THREAD_FULL_FENCE
  const uint32_t open = s.owner_open.load(std::memory_order_seq_cst);
#else
  const uint32_t open = s.owner_open.load(std::memory_order_acquire);
#endif
  SYNCPOOL_SLOT_HOOK(1);
  return open;
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void ThreadLeave(ClassStack& s) {
  SYNCPOOL_SLOT_LEFT_HOOK();  // First: a remote operation may start once busy reads 0.
  s.busy.store(0, std::memory_order_release);
}

// The calling thread's ClassStack in the class row `row` of a per-thread cache.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline ClassStack& ThreadStack(char* row) {
  return *reinterpret_cast<ClassStack*>(row + (size_t{tls_thread_slot} << kClassStackShift));
}

// ThreadPop()
//
// Pops the top of the calling thread's primary stack in class row `row`, lowering its
// low-water mark and counting a hit; nullptr when it is empty or closed (or the thread has no
// slot yet).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* ThreadPop(char* row) {
  ClassStack& s = ThreadStack(row);
  ThreadEnter(s);
  const uint32_t open = ThreadOpenCapacity(s);
  const uint32_t n = s.primary_count.load(std::memory_order_relaxed) - 1;
  void* block = nullptr;
  if (ABSL_PREDICT_TRUE(n < open)) {  // A count of 0 wraps to above any capacity.
    block = s.primary[n];
    if (n < s.low_water) s.low_water = n;
    s.hits.store(s.hits.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    s.primary_count.store(n, std::memory_order_relaxed);  // Commit.
  }
  ThreadLeave(s);
  return block;
}

// ThreadPush()
//
// Pushes `block` onto the calling thread's primary stack in class row `row`; false (keeping
// nothing) when it is full or closed (or the thread has no slot yet).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool ThreadPush(char* row, void* block) {
  ClassStack& s = ThreadStack(row);
  ThreadEnter(s);
  const uint32_t open = ThreadOpenCapacity(s);
  const uint32_t n = s.primary_count.load(std::memory_order_relaxed);
  const bool kept = n < open;
  if (ABSL_PREDICT_TRUE(kept)) {
    s.primary[n] = block;
    s.primary_count.store(n + 1, std::memory_order_relaxed);  // Commit.
  }
  ThreadLeave(s);
  return kept;
}

// ThreadPushBatch()
//
// ThreadPush() of `blocks[0]`, then `blocks[1]`, ... (the last one pushed ends on top), as many
// as fit below owner_open and at most `n`, in one owner's operation: step 4 writes the slots,
// then one store of the count commits them all (a remote operation that waited for busy = 0
// sees all of them or, closed first, none). Returns how many it pushed: 0 when the stack is full
// or closed (or the thread has no slot yet). For slow paths that hand the thread a batch (a
// refill); not for the inline paths (a loop inside).
inline uint32_t ThreadPushBatch(char* row, void* const* blocks, uint32_t n) {
  ClassStack& s = ThreadStack(row);
  ThreadEnter(s);
  const uint32_t open = ThreadOpenCapacity(s);
  const uint32_t count = s.primary_count.load(std::memory_order_relaxed);
  uint32_t pushed = 0;
  if (ABSL_PREDICT_TRUE(count < open)) {
    pushed = open - count < n ? open - count : n;
    for (uint32_t i = 0; i < pushed; ++i) s.primary[count + i] = blocks[i];
    s.primary_count.store(count + pushed, std::memory_order_relaxed);  // Commit.
  }
  ThreadLeave(s);
  return pushed;
}

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
