// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/thread_slots.h
// -----------------------------------------------------------------------------
//
// The per-thread mode's local operations and the thread slots they use. Not part of syncpool's
// API. Used where the restartable sequences are not (glibc registered no rseq area, valgrind,
// ThreadSanitizer, SYNCPOOL_RSEQ=0, other architectures): a cache then keeps one column of
// ClassStacks per thread instead of per CPU, and the thread that owns a column pushes and
// pops on it without an atomic read-modify-write and without a system call.
//
// Thread slots. A thread that reaches the slow path of a per-thread cache takes a slot, a
// number in [1, kThreadSlots) that names its column in every per-thread cache of the process
// (tls_thread_slot; 0 means none, and column 0 is never opened, so the inline operations of a
// thread without a slot fail over to the slow path, which takes one). At thread exit the slot
// is given back after every per-thread cache has moved what the thread's column holds to its
// shared layer (ThreadSlotUser::FlushSlot()); the next thread to take the slot finds the
// columns empty. When every slot is taken a thread goes without one: its operations use the
// shared layer only (correct, slower).
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

#ifndef SYNCPOOL_INTERNAL_THREAD_SLOTS_H_
#define SYNCPOOL_INTERNAL_THREAD_SLOTS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/config.h"
#include "syncpool/internal/cpu_cache.h"

#if defined(ABSL_HAVE_THREAD_SANITIZER)
#define SYNCPOOL_THREAD_FULL_FENCE 1
#else
#define SYNCPOOL_THREAD_FULL_FENCE 0
#endif

namespace syncpool {
namespace internal {

// Columns of a per-thread cache: slots 1 to kThreadSlots - 1, and the column 0 that never opens.
inline constexpr uint32_t kThreadSlots = 1024;

// The calling thread's slot, 0 when it has none (yet). Initial-exec: one load from the thread
// pointer.
extern __thread uint32_t tls_thread_slot __attribute__((tls_model("initial-exec")));

// AcquireThreadSlot()
//
// The calling thread's slot, taking a free one (and arranging its return at thread exit) when
// it has none; 0 when every slot is taken.
uint32_t AcquireThreadSlot();

// What a per-thread cache does for the slots (BlockCache implements it).
class ThreadSlotUser {
 public:
  // Moves what column `slot` holds to the shared layer. Called on the exiting thread that
  // owns the slot, with the registry's lock held.
  virtual void FlushSlot(uint32_t slot) = 0;
  // In a fork child, with the registry's lock held: clear every column's busy flags.
  virtual void ResetBusyAfterFork() = 0;

 protected:
  ~ThreadSlotUser() = default;
};

// Per-thread caches join the registry when they are built and leave it before they are
// destroyed (waiting for a thread-exit flush that is visiting them).
void RegisterSlotUser(ThreadSlotUser* user);
void UnregisterSlotUser(ThreadSlotUser* user);

// Taken by the sweepers' fork handlers after every sweep's lock and before every cache's
// (the order is in sweeper.cc), since a sweep may take a slot and a thread exit holds the
// registry's lock while it takes CPU caches' locks. In the child, every slot but the forking
// thread's becomes free and ResetBusyAfterFork() runs.
void ThreadSlotsLockForFork();
void ThreadSlotsUnlockAfterFork(bool child);

// ThreadFenceUsable()
//
// Whether the per-thread mode can run here: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
// registered (decided once), or a ThreadSanitizer build (full fences). Sets `*why` to the reason
// when not.
bool ThreadFenceUsable(const char** why);

// FenceAllThreads()
//
// The remote side's fence (see the protocol above). Aborts if the kernel refuses it after
// ThreadFenceUsable() said yes (there is no safe way on).
void FenceAllThreads();

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

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_THREAD_SLOTS_H_
