// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A BlockCache's epochs (SweepEpoch(): aging, draining cold CPUs, pressure, the sizing step,
// then the budgets), its drains, and its statistics (Snapshot()). Everything here takes
// blocks out of caches as remote operations and releases them with nothing held.

#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

#include "block_cache_remote.h"
#include "src/block_cache.h"

namespace syncpool {
namespace internal {

template <typename Take>
void BlockCache::TakeAndRelease(int cpu, CpuCache* c, Take take, TakeBuffer& buffer) {
  c->changes.fetch_add(1, std::memory_order_relaxed);  // Counts go down without hits.
  // A bounded take per remote operation, so that the cache is closed only briefly however
  // much it holds (a cold CPU's cache is copied out kTakeChunk blocks at a time).
  const size_t room = std::min(buffer.blocks.size(), kTakeChunk);
  std::vector<uint64_t>& totals = buffer.totals;
  std::fill(totals.begin(), totals.end(), 0);
  buffer.released_bytes = 0;
  size_t taken;
  do {
    taken = Remote(cpu, c, [&](CpuCache* cc) {
      cc->lock.AssertHeld();  // Remote() holds it.
      size_t at = 0;
      for (size_t cls = 0; cls < buffer.counts.size(); ++cls) {
        buffer.counts[cls] =
            static_cast<uint32_t>(take(cc, cls, buffer.blocks.data() + at, room - at));
        at += buffer.counts[cls];
      }
      return at;
    });
    size_t at = 0;
    for (size_t cls = 0; cls < buffer.counts.size(); ++cls) {
      buffer.released_bytes +=
          ReleasePaced(buffer, cls, buffer.blocks.data() + at, buffer.counts[cls]);
      at += buffer.counts[cls];
      totals[cls] += buffer.counts[cls];
    }
  } while (taken == room);
}

void BlockCache::EmptyCpu(int cpu, CpuCache* c, bool victims_only, TakeBuffer& buffer,
                          uint64_t* blocks, uint64_t* bytes) {
  if (victims_only) {
    TakeAndRelease(
        cpu, c,
        [](CpuCache* cc, size_t cls, void** out, size_t room) {
          cc->lock.AssertHeld();  // TakeAndRelease() calls it inside Remote().
          return cc->TakeVictims(cls, out, room);
        },
        buffer);
  } else {
    TakeAndRelease(
        cpu, c,
        [](CpuCache* cc, size_t cls, void** out, size_t room) {
          cc->lock.AssertHeld();  // TakeAndRelease() calls it inside Remote().
          return cc->TakeAll(cls, out, room);
        },
        buffer);
  }
  for (size_t cls = 0; cls < buffer.totals.size(); ++cls) *blocks += buffer.totals[cls];
  *bytes += buffer.released_bytes;
}

void BlockCache::DrainTransfers(TakeBuffer& buffer, uint64_t* blocks, uint64_t* bytes) {
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    const size_t n = transfers_[cls].TakeAll(buffer.blocks.data());
    *bytes += ReleasePaced(buffer, cls, buffer.blocks.data(), n);
    *blocks += n;
  }
}

void BlockCache::DrainCounting(TakeBuffer& buffer, uint64_t* blocks, uint64_t* bytes) {
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr || c->LooksEmpty()) continue;
    EmptyCpu(cpu, c, /*victims_only=*/false, buffer, blocks, bytes);
  }
  DrainTransfers(buffer, blocks, bytes);
}

void BlockCache::SweepEpoch(const Epoch& epoch) {
  // Per CPU whose cache holds anything, one remote operation: drain it if nobody used it since
  // the last epoch (copying its blocks out: nobody waits on a cold CPU), else age every class
  // by rotating its arrays, in time that does not grow with what it caches; then release what
  // left with no lock held. Sweeps of one cache are serialized (sweeper.h), so the buffers
  // below are the sweep's own; they are made on the first epoch and kept (without memory for
  // them the epoch is skipped: the blocks stay cached until the next one).
  TakeBuffer& buffer = sweep_buffer_;
  try {
    if (buffer.blocks.empty()) {
      // Room for both generations of one CPU (2 * total_capacity_) or of one TransferStack
      // (4 * its class's capacity, at most 4 * total_capacity_).
      buffer.blocks.resize(4 * total_capacity_);
      buffer.counts.resize(class_bytes_.size());
      buffer.totals.resize(class_bytes_.size());
      detached_.resize(class_bytes_.size());
    }
  } catch (const std::bad_alloc&) {
    buffer.blocks.clear();
    return;
  }
  // The releases below go in slices (SweepPacer): every Pause() comes with no lock held and
  // every cache reopened.
  buffer.pacer = epoch.pacer;
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  if (epoch.pressure) {
    DrainCounting(buffer, &blocks, &bytes);
    pressure_blocks_.fetch_add(blocks, std::memory_order_relaxed);
    pressure_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    const bool whole_primary = policy_.retention == Retention::kVictim;
    for (int cpu = 0; cpu < num_cpus_; ++cpu) {
      CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
      if (c == nullptr) continue;
      const bool cold = c->Activity() == c->activity_at_last_epoch;
      // A cache that reads empty is skipped (a block pushed concurrently is aged next epoch),
      // but for its sizing: shrunk by one step per epoch, its slot pages above the capacity
      // given back.
      if (c->LooksEmpty()) {
        if (c->CanShrink()) ShrinkEmpty(cpu, c);
      } else {
        if (cold) {
          EmptyCpu(cpu, c, /*victims_only=*/false, buffer, &blocks, &bytes);
        } else {
          Remote(cpu, c, [this, whole_primary](CpuCache* cc) {
            cc->lock.AssertHeld();  // Remote() holds it.
            for (size_t cls = 0; cls < detached_.size(); ++cls) {
              detached_[cls].slots = cc->AgeDetach(cls, whole_primary, &detached_[cls].count);
            }
            return 0;
          });
          // The detached arrays are the sweep's alone now: release their blocks, then give
          // the arrays back as spares (under the lock, which sequences never wait for).
          // A pause among these releases leaves the CPU without its spare arrays for a
          // while, which only this sweep's next AgeDetach() needs.
          for (size_t cls = 0; cls < detached_.size(); ++cls) {
            bytes += ReleasePaced(buffer, cls, detached_[cls].slots, detached_[cls].count);
            blocks += detached_[cls].count;
          }
          SpinLockHolder l(&c->lock);
          for (size_t cls = 0; cls < detached_.size(); ++cls) {
            c->ReturnSpare(cls, detached_[cls].slots);
          }
        }
      }
    }
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      if (transfers_[cls].LooksEmpty()) continue;
      uint32_t n;
      void** const slots = transfers_[cls].AgeDetach(&n);
      bytes += ReleasePaced(buffer, cls, slots, n);
      transfers_[cls].ReturnSpare(slots);
      blocks += n;
    }
    swept_blocks_.fetch_add(blocks, std::memory_order_relaxed);
    swept_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  RefreshEstimate();
  EnforceBudget(buffer);
  // What the releases above left wholly unused behind the caches (a resource's free spans):
  // under pressure all of it, otherwise what was not used since the previous epoch either.
  releaser_->ReleaseIdle(epoch.pressure, buffer.pacer);
  // What this epoch left, every path included (aging, draining, pressure, budgets), for the
  // next epoch to tell a CPU nobody used since.
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    if (CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) {
      c->activity_at_last_epoch = c->Activity();
    }
  }
  epochs_.fetch_add(1, std::memory_order_relaxed);
  buffer.pacer = nullptr;  // The pacer lives as long as the sweep.
}

void BlockCache::ShrinkEmpty(int cpu, CpuCache* c) {
  Remote(cpu, c, [](CpuCache* cc) {
    cc->lock.AssertHeld();  // Remote() holds it.
    // It held nothing at the last look: back to the starting capacities at once, so that the
    // slot pages of a burst go back to the system with the burst.
    for (size_t cls = 0; cls < cc->num_classes; ++cls) cc->Shrink(cls, /*to_start=*/true);
    return 0;
  });
  // Reopened: sequences stay below the new capacities, and the lock keeps Grow() out.
  SpinLockHolder l(&c->lock);
  c->ReleaseSlotPages();
}

void BlockCache::Drain() {
  TakeBuffer buffer;
  try {
    // Room for both generations of one CPU, or of one TransferStack.
    buffer.blocks.resize(4 * total_capacity_);
    buffer.counts.resize(class_bytes_.size());
    buffer.totals.resize(class_bytes_.size());
  } catch (const std::bad_alloc&) {
    DrainOneByOne();  // Draining runs in destructors: it must not fail for want of memory.
    return;
  }
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  DrainCounting(buffer, &blocks, &bytes);
  RefreshEstimate();
  releaser_->ReleaseIdle(/*everything=*/true, /*pacer=*/nullptr);
}

void BlockCache::DrainOneByOne() {
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    c->changes.fetch_add(1, std::memory_order_relaxed);  // Counts go down without hits.
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      while (void* block = Remote(cpu, c, [cls](CpuCache* cc) {
               cc->lock.AssertHeld();  // Remote() holds it.
               void* b = cc->PopPrimary(cls);
               return b != nullptr ? b : cc->PopVictim(cls);
             })) {
        Release(cls, &block, 1);
      }
    }
  }
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    void* block;
    while (transfers_[cls].Remove(&block, 1) == 1) Release(cls, &block, 1);
  }
  releaser_->ReleaseIdle(/*everything=*/true, /*pacer=*/nullptr);
}

Stats BlockCache::Snapshot() const {
  Stats s;
  s.classes.resize(class_bytes_.size());
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    s.classes[cls].block_bytes = class_bytes_[cls];
  }
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    const CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    s.hits += c->Hits();
    s.misses += c->Misses();
    s.spills += c->spills.load(std::memory_order_relaxed);
    s.grows += c->grows.load(std::memory_order_relaxed);
    uint64_t cache_bytes = 0;
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      const uint64_t primary = c->PrimaryCount(cls);
      const uint64_t victim = c->VictimCount(cls);
      s.primary_blocks += primary;
      s.primary_bytes += primary * class_bytes_[cls];
      s.victim_blocks += victim;
      s.victim_bytes += victim * class_bytes_[cls];
      cache_bytes += (primary + victim) * class_bytes_[cls];
      s.classes[cls].cached_blocks += primary + victim;
      s.classes[cls].hits += c->stack(cls).hits.load(std::memory_order_relaxed);
    }
    ++s.caches;
    s.reserved_bytes += c->ReservedBytes();
    s.max_cache_bytes = std::max(s.max_cache_bytes, cache_bytes);
  }
  s.hits += transfer_hits_.load(std::memory_order_relaxed);
  s.misses += orphan_misses_.load(std::memory_order_relaxed);
  s.mode = mode_.name;
  s.mode_reason = mode_.why;
  s.over_budget_blocks = over_budget_blocks_.load(std::memory_order_relaxed);
  s.over_budget_bytes = over_budget_bytes_.load(std::memory_order_relaxed);
  s.pressure_blocks = pressure_blocks_.load(std::memory_order_relaxed);
  s.pressure_bytes = pressure_bytes_.load(std::memory_order_relaxed);
  s.spills += orphan_spills_.load(std::memory_order_relaxed);
  s.shared_moves = shared_moves_.load(std::memory_order_relaxed);
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    const uint64_t primary = transfers_[cls].PrimaryCount();
    const uint64_t victim = transfers_[cls].VictimCount();
    s.classes[cls].cached_blocks += primary + victim;
    s.primary_blocks += primary;
    s.primary_bytes += primary * class_bytes_[cls];
    s.victim_blocks += victim;
    s.victim_bytes += victim * class_bytes_[cls];
  }
  if (owned_ != nullptr) {
    // What the objects own, counted as they came and went; split between the generations in
    // proportion to their objects (which generation holds which object is not counted).
    const uint64_t total = CachedBytes();
    const uint64_t objects = s.primary_blocks + s.victim_blocks;
    s.victim_bytes = objects == 0 ? 0
                                  : static_cast<uint64_t>(static_cast<unsigned __int128>(total) *
                                                          s.victim_blocks / objects);
    s.primary_bytes = total - s.victim_bytes;
    s.max_cache_bytes = 0;  // Not counted per cache.
  }
  s.swept_blocks = swept_blocks_.load(std::memory_order_relaxed);
  s.swept_bytes = swept_bytes_.load(std::memory_order_relaxed);
  s.epochs = epochs_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace internal
}  // namespace syncpool
