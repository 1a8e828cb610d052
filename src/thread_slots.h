// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/thread_slots.h
// -----------------------------------------------------------------------------
//
// The thread slots of the per-thread mode (its columns and the owner's operations on them:
// local_cache.h). Not part of syncpool's API.
//
// Thread slots. A thread that reaches the slow path of a per-thread cache takes a slot, a
// number in [1, kThreadSlots) that names its column in every per-thread cache of the process
// (tls_thread_slot; 0 means none, and column 0 is never opened, so the inline operations of a
// thread without a slot fail over to the slow path, which takes one). At thread exit the slot
// is given back after every per-thread cache has moved what the thread's column holds to its
// shared layer (ThreadSlotUser::FlushSlot()); the next thread to take the slot finds the
// columns empty. When every slot is taken a thread goes without one: its operations use the
// shared layer only (correct, slower).

#ifndef SYNCPOOL_SRC_THREAD_SLOTS_H_
#define SYNCPOOL_SRC_THREAD_SLOTS_H_

#include <cstdint>

#include "syncpool/internal/local_cache.h"

namespace syncpool {
namespace internal {

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
  // In a fork child, with the registry's lock held: clear every column's busy flags (the
  // registry is a layer of the fork registry, fork.h).
  virtual void ResetBusyAfterFork() = 0;

 protected:
  ~ThreadSlotUser() = default;
};

// Per-thread caches join the registry when they are built and leave it before they are
// destroyed (waiting for a thread-exit flush that is visiting them).
void RegisterSlotUser(ThreadSlotUser* user);
void UnregisterSlotUser(ThreadSlotUser* user);


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

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_THREAD_SLOTS_H_
