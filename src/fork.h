// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/fork.h
// -----------------------------------------------------------------------------
//
// fork(): the one registry that every layer holding a lock joins, and the protocol. Not part
// of syncpool's API.
//
// The problem: a child of fork() has only the forking thread. A lock another thread held at
// the fork stays held in the child forever, and the next syncpool call there that takes it
// hangs. So before a fork the forking thread takes every lock syncpool's operations may hold,
// and after it both processes release them (pthread_atfork). The child then finds no lock
// held by a thread it does not have, and its pools work as the parent's did.
//
// The registry: each layer with locks joins it once, as a ForkLayer (its lock and unlock
// functions and a rank), from a static initializer in its own .cc file. The handlers are
// installed by the first Sweeper (InstallForkHandlers()): before one exists no cache exists,
// and no syncpool lock is taken. Before a fork the handler locks the layers by rank, in the
// order below, and within a rank in the order they joined; after it, both processes unlock
// them in the reverse order. In the child, g_fork_generation is advanced first, then every
// layer's unlock runs with `child` true.
//
// The ranks, and why each comes where it does (every other path takes these locks in the same
// order, so the handler cannot deadlock with it):
//   1. kSweeps: the list of sweepers' mutex, then every sweeper's `sweep_mu` (sweeper.cc), so
//      that no sweep is under way. A sweep holds its `sweep_mu` while it releases blocks, and a
//      release may take the next two: a thread slot (a release counted in owned bytes on the
//      sweeping thread, or a pooled object's destructor that Puts into a per-thread cache) or
//      the report's lock (a pooled object's destructor that destroys a pool).
//   2. kThreadSlots: the thread-slot registry's lock (thread_slots.cc). A thread exit holds it
//      while it takes CPU caches' locks. In the child every slot but the forking thread's is
//      free again, and every per-thread column's busy flags are cleared.
//   3. kStatsReport: the SYNCPOOL_STATS report's lock (stats_report.cc).
//   4. kRegistrations: the lock under which a cache joins its sweeper, at its first use
//      (block_cache.cc). It is one lock for the process, not one per cache, because a cache
//      that has not joined yet is in no sweeper's list, where the last rank finds caches. It
//      comes after kSweeps (a pooled object's destructor, in a sweep, may Put into a pool
//      used for the first time) and before kSweepers (joining takes the sweeper's `mu`).
//   5. kSweepers: per sweeper, in list order, its `mu`, then each registered cache's locks
//      (Sweepable::LockForFork()): its releaser's (the face's debug registry, a resource's
//      span shards and large-block shards), its CPU caches', its TransferStacks'. A cache
//      operation takes one of them at a time, a sweep takes `mu` briefly and then one cache
//      lock at a time. In the child each sweeper's background thread is gone: its condition
//      variable is made anew, and the thread starts again at the next slow path of one of its
//      caches (the caches compare g_fork_generation with the one they saw last).

#ifndef SYNCPOOL_SRC_FORK_H_
#define SYNCPOOL_SRC_FORK_H_

#include <atomic>
#include <cstdint>

namespace syncpool {
namespace internal {

// Where a layer's locks come in the fork handler's order (the protocol above).
enum class ForkRank : uint8_t {
  kSweeps = 0,
  kThreadSlots = 1,
  kStatsReport = 2,
  kRegistrations = 3,
  kSweepers = 4,
};

// ForkLayer
//
// One layer's part in the fork handlers. `lock` takes every lock of the layer, `unlock`
// releases them (in the child, `child` is true and the layer also mends what the missing
// threads left). The constructor joins the registry: define one per layer at namespace scope
// in the layer's .cc file, never destroyed.
//
// Thread safety: the constructor may run beside a fork (a library loaded late); it pushes with
// one atomic exchange, and a fork handler walks what was pushed before it began.
class ForkLayer {
 public:
  ForkLayer(ForkRank rank, void (*lock)(), void (*unlock)(bool child));
  ForkLayer(const ForkLayer&) = delete;
  ForkLayer& operator=(const ForkLayer&) = delete;

 private:
  friend struct ForkRegistryAccess;
  const ForkRank rank_;
  void (*const lock_)();
  void (*const unlock_)(bool child);
  ForkLayer* next_ = nullptr;  // Written once, before the layer is published.
};

// InstallForkHandlers()
//
// Installs the pthread_atfork handlers, once per process (every Sweeper's constructor calls
// it). Throws std::system_error when pthread_atfork() fails (for want of memory).
void InstallForkHandlers();

// How many times this process is a fork() child of a process with a sweeper (0 in the first
// process): caches compare it with what they saw last to restart their sweeper.
extern std::atomic<uint64_t> g_fork_generation;

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_FORK_H_
