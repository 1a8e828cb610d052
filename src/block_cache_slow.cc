// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The slow paths of BlockCache::Get() and Put(): what runs when the inline sequence (or the
// per-thread column) cannot serve the call. Get: the caller's CPU's generations under its lock
// or as a remote operation, then the TransferStack, else a miss; Put: grow the CPU's capacity,
// else move a batch to the TransferStack, else spill. The policy is in block_cache.h.

#include <algorithm>
#include <cstdint>

#include "block_cache_remote.h"
#include "src/current_cpu.h"
#include "src/block_cache.h"

namespace syncpool {
namespace internal {
void* BlockCache::GetSlow(size_t cls) {
  sweeper_->WakeIfParked();
  // Pops from the primary, else the victim generation, of a cache locked (and closed) by us.
  auto pop_locked = [cls](CpuCache* cc) {
    cc->lock.AssertHeld();  // Held by the caller (Remote() or a SpinLockHolder).
    void* b = cc->PopPrimary(cls);
    if (b == nullptr) b = cc->PopVictim(cls);
    if (b != nullptr) cc->CountHit(cls);
    return b;
  };
  void* block = nullptr;
  CpuCache* c = nullptr;
  try {
    if (mode_.per_thread) {
      // The owner's slow path: under the lock, which keeps remote operations out (its own
      // inline operations are not running: this is the same thread).
      if (const uint32_t slot = AcquireThreadSlot(); slot != 0) {
        c = CacheOf(static_cast<int>(slot));
        {
          SpinLockHolder l(&c->lock);
          ReopenForOwner(c);
          block = pop_locked(c);
        }
        // The column may have been reopened after a park closed it (one that ran since the
        // read of `parked_` at the top), and the blocks of a refill go into it next: read
        // `parked_` again now that it is open (sweeper.cc, "Parking").
        sweeper_->WakeIfParked();
      }
    } else if (!mode_.rseq) {
      c = CacheOf(CurrentCpu());
      SpinLockHolder l(&c->lock);
      block = pop_locked(c);
    } else if (const int target = RemoteCpuOfThisThread(num_cpus_); target >= 0) {
      // Not the CPU this thread runs on: work on its cache as a remote operation.
      c = CacheOf(target);
      block = Remote(target, c, pop_locked);
    } else {
#if SYNCPOOL_RSEQ_FAST_PATH
      // The common miss first, read from this CPU's stack in the class's row (where the
      // sequences look) without going through its CpuCache: open, both generations empty, and
      // the TransferStack too. The reads are hints (the thread may move, blocks may come); the
      // sequence that counts the miss is the authority on where it is counted.
      // (Read again, the column id may be one the region has no row for: then no shortcut.)
      if (const uint32_t column = RseqColumnId(); column < static_cast<uint32_t>(num_cpus_)) {
        const ClassStack& s =
            *reinterpret_cast<const ClassStack*>(Row(cls) + (size_t{column} << kClassStackShift));
        if (s.open_capacity.load(std::memory_order_relaxed) != 0 &&
            s.primary_count.load(std::memory_order_relaxed) == 0 &&
            s.victim_count.load(std::memory_order_relaxed) == 0 && transfers_[cls].LooksEmpty() &&
            RseqCountMiss(Row(cls))) {
          return nullptr;
        }
      }
      c = CacheOf(static_cast<int>(RseqColumnId() % static_cast<uint32_t>(num_cpus_)));
      WaitAndOpen(c, cls);
      // The counts are a hint (the thread may move): the sequences are the authority, and a
      // stack that reads empty in both generations is not worth two more of them.
      if (c->PrimaryCount(cls) != 0 || c->VictimCount(cls) != 0) {
        block = RseqPopPrimary(Row(cls));
        if (block == nullptr) block = RseqPopVictim(Row(cls));
      }
#else
      c = CacheOf(CurrentCpu());  // Not reached: the rseq mode needs SYNCPOOL_RSEQ_FAST_PATH.
#endif
    }
  } catch (...) {
    // No cache could be created for this CPU or thread (no memory or address space, or the
    // sweeper's thread failed to start): served without one, from the shared layer or as a
    // miss, as a Put releases what it cannot cache.
    c = nullptr;
    block = nullptr;
  }
  if (block != nullptr) return UnpoisonCached(block, class_bytes_[cls]);
  if (!transfers_[cls].LooksEmpty()) {  // A racy probe: a miss is the worst it can cause.
    block = FromTransfer(cls);
    if (block != nullptr) return UnpoisonCached(block, class_bytes_[cls]);
  }
  // A miss. Nothing here touches another CPU's cache (see the policy in block_cache.h).
#if SYNCPOOL_RSEQ_FAST_PATH
  if (mode_.rseq && RseqCountMiss(Row(cls))) return nullptr;
#endif
  (c != nullptr ? c->misses : orphan_misses_).fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

size_t BlockCache::Batch(size_t cls) const {
  return std::clamp<size_t>(capacities_[cls] / 2, 1, kMaxTransferBatch);
}

void* BlockCache::FromTransfer(size_t cls) {
  TransferStack& t = transfers_[cls];
  void* taken[kMaxTransferBatch];
  const size_t n = t.Remove(taken, Batch(cls));
  if (n == 0) return nullptr;
  // They go to a CPU or the caller (for owned bytes, the caller counts them).
  if (owned_ == nullptr) AddEstimate(-static_cast<int64_t>(n * class_bytes_[cls]));
  transfer_hits_.fetch_add(1, std::memory_order_relaxed);
  PutBatch(cls, taken + 1, n - 1);
  return taken[0];
}

void BlockCache::ToTransfer(size_t cls, CpuCache* c, void* const* blocks, size_t n) {
  // Owned bytes are counted already, wherever the blocks are.
  if (OverBudget(owned_ != nullptr ? 0 : n * class_bytes_[cls])) {
    CountOverBudget(n, Release(cls, blocks, n));
    return;
  }
  const size_t stored = transfers_[cls].capacity() != 0 ? transfers_[cls].Insert(blocks, n) : 0;
  if (stored != 0) {
    // (Not when nothing was stored: the classes without a TransferStack spill every batch,
    // and the process-wide estimate's line is shared by every thread.)
    if (owned_ == nullptr) AddEstimate(static_cast<int64_t>(stored * class_bytes_[cls]));
    shared_moves_.fetch_add(stored, std::memory_order_relaxed);
  }
  if (stored == n) return;
  (c != nullptr ? c->spills : orphan_spills_).fetch_add(n - stored, std::memory_order_relaxed);
  Release(cls, blocks + stored, n - stored);
}

bool BlockCache::GrowthAllowed(const CpuCache* c, size_t cls, uint32_t cap) const {
  // Doubling adds `cap` blocks of room: it must fit the CPU's own bound, and the full stack
  // and the room it would add count against the byte budgets (the estimate only learns what
  // CPU caches hold at epochs).
  const uint64_t added = uint64_t{cap} * class_bytes_[cls];
  return cap < max_capacities_[cls] &&
         (policy_.max_cpu_bytes == 0 || c->CapacityBytes() + added <= policy_.max_cpu_bytes) &&
         !OverBudget(owned_ != nullptr ? 0 : 2 * added);
}

bool BlockCache::TryGrow(int cpu, CpuCache* c, size_t cls) {
  if (!GrowthAllowed(c, cls, c->Capacity(cls))) return false;
  // Again under the lock: another thread on this CPU may have grown a class since the hint.
  auto grow = [&](CpuCache* cc, bool exclusive) {
    cc->lock.AssertHeld();  // Held by the caller (Remote() or the SpinLockHolder below).
    return GrowthAllowed(cc, cls, cc->Capacity(cls)) && cc->Grow(cls, exclusive);
  };
  if (c->GrowMovesArrays(cls)) {
    // The arrays move: sequences on `cpu` must be kept off them (a few times per class over
    // the cache's life, as the reserve doubles).
    return Remote(cpu, c, [&](CpuCache* cc) { return grow(cc, /*exclusive=*/true); });
  }
  SpinLockHolder l(&c->lock);
  return grow(c, /*exclusive=*/false);
}

void BlockCache::PutSlow(size_t cls, void* block) {
  sweeper_->WakeIfParked();
  // Blocks moved out of a full primary generation to make room, for the TransferStack.
  void* moved[kMaxTransferBatch];
  size_t n_moved = 0;
  const size_t batch = Batch(cls);
  // Under the cache's lock (and, remotely, with it closed): push, or make room and push.
  auto push_locked = [&](CpuCache* cc) {
    cc->lock.AssertHeld();  // Held by the caller (Remote() or a SpinLockHolder).
    if (cc->PushPrimary(cls, block)) return true;
    cc->NoteOverflow(cls);
    // No inline operation can be using the arrays here (a remote operation, the column's own
    // thread, or the locked mode), so growing may move them.
    if (GrowthAllowed(cc, cls, cc->Capacity(cls)) && cc->Grow(cls, /*exclusive=*/true)) {
      return cc->PushPrimary(cls, block);
    }
    n_moved = cc->PopPrimaryToMove(cls, moved, batch);
    return cc->PushPrimary(cls, block);
  };
  bool kept = false;
  CpuCache* c = nullptr;
  try {
    if (mode_.per_thread) {
      if (const uint32_t slot = AcquireThreadSlot(); slot != 0) {
        c = CacheOf(static_cast<int>(slot));
        SpinLockHolder l(&c->lock);
        ReopenForOwner(c);
        kept = push_locked(c);
      } else {
        ToTransfer(cls, nullptr, &block, 1);  // No slot: the shared layer, or a spill.
        // No column holds the block, so a park that ran since this slow path read `parked_`
        // may have missed it: read it again now that the block is in (BlockCache::Park()).
        sweeper_->WakeIfParked();
        return;
      }
    } else if (!mode_.rseq) {
      c = CacheOf(CurrentCpu());
      SpinLockHolder l(&c->lock);
      kept = push_locked(c);
    } else if (const int target = RemoteCpuOfThisThread(num_cpus_); target >= 0) {
      c = CacheOf(target);
      kept = Remote(target, c, push_locked);
    } else {
#if SYNCPOOL_RSEQ_FAST_PATH
      // A sequence also fails when a remote operation closed the cache or the thread moved to
      // a CPU without a cache: retry a few times. When the stack reads full, grow the CPU's
      // capacity and retry; at its maximum, make room once by moving a batch out (one
      // sequence, RseqPopBatchToMove(), on whatever CPU the thread is then on: a local
      // operation), then retry; a second full stack means a spill.
      char* const row = Row(cls);
      for (int attempt = 0; attempt < 4 && !kept; ++attempt) {
        const int cpu = static_cast<int>(RseqColumnId() % static_cast<uint32_t>(num_cpus_));
        c = CacheOf(cpu);
        WaitAndOpen(c, cls);
        kept = RseqPush(row, block);
        if (kept || c->PrimaryCount(cls) < c->Capacity(cls)) continue;
        c->NoteOverflow(cls);
        if (TryGrow(cpu, c, cls)) continue;
        if (n_moved != 0) break;
        n_moved = RseqPopBatchToMove(row, moved, static_cast<uint32_t>(batch));
      }
#else
      c = CacheOf(CurrentCpu());  // Not reached: the rseq mode needs SYNCPOOL_RSEQ_FAST_PATH.
#endif
    }
  } catch (...) {
    // No cache could be created for this CPU (memory, or the sweeper's thread failed to
    // start). A Put must not fail: release the block instead of caching it.
  }
  if (n_moved != 0) {
    if (c != nullptr) c->changes.fetch_add(1, std::memory_order_relaxed);
    ToTransfer(cls, c, moved, n_moved);
  }
  // The locked and per-thread modes read `parked_` here, with their blocks in: the locked mode
  // has no closed column, and the per-thread column was reopened under its lock, maybe after a
  // park that ran since the read at the top closed it (see BlockCache::Park()).
  if (!mode_.rseq) sweeper_->WakeIfParked();
  if (kept) return;
  // Spill: the block found no room. Release it now, outside any lock.
  (c != nullptr ? c->spills : orphan_spills_).fetch_add(1, std::memory_order_relaxed);
  Release(cls, &block, 1);
}

void BlockCache::PutBatch(size_t cls, void* const* blocks, size_t n) {
  size_t pushed = 0;
  if (n != 0 && (mode_.rseq || mode_.per_thread)) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
    // Before the push that publishes them (Put() poisons the rest again: harmless).
    for (size_t i = 0; i < n; ++i) PoisonCached(blocks[i], class_bytes_[cls]);
#endif
    const uint32_t want = static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
#if SYNCPOOL_RSEQ_FAST_PATH
    if (mode_.rseq) pushed = RseqPushBatch(Row(cls), blocks, want);
#endif
    if (mode_.per_thread) pushed = ThreadPushBatch(Row(cls), blocks, want);
  }
  for (size_t i = pushed; i < n; ++i) Put(cls, blocks[i]);
}


}  // namespace internal
}  // namespace syncpool
