// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A BlockCache's byte budgets: its estimate of what it caches, the process-wide sum of every
// cache's estimate (against SetProcessCacheLimit(), options.h), the checks a Put or a growth
// makes against both, the owned-bytes counters (AccountOwned(), block_cache.h), and what an
// epoch releases to get back within them.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <new>
#include <vector>

#include "block_cache_remote.h"
#include "src/block_cache.h"

namespace syncpool {
namespace internal {

namespace {

// The sum of every cache's estimate, against ProcessLimit() (options.h).
// Signed: between two epochs a cache only adds and subtracts what moves through its
// TransferStacks, and a sum read while others update it may dip below zero.
std::atomic<int64_t> g_process_estimate{0};

// Whether `estimate` plus `extra` bytes goes over `limit` (0: no limit).
bool Exceeds(int64_t estimate, uint64_t extra, uint64_t limit) {
  return limit != 0 && static_cast<uint64_t>(std::max<int64_t>(estimate, 0)) + extra > limit;
}

}  // namespace

bool BlockCache::OverBudget(uint64_t extra) const {
  return Exceeds(estimate_.load(std::memory_order_relaxed), extra, policy_.max_cached_bytes) ||
         Exceeds(g_process_estimate.load(std::memory_order_relaxed), extra,
                 ProcessLimit().load(std::memory_order_relaxed));
}

void BlockCache::SetEstimate(uint64_t bytes) {
  const int64_t old = estimate_.exchange(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  g_process_estimate.fetch_add(static_cast<int64_t>(bytes) - old, std::memory_order_relaxed);
}

void BlockCache::AddEstimate(int64_t bytes) {
  estimate_.fetch_add(bytes, std::memory_order_relaxed);
  g_process_estimate.fetch_add(bytes, std::memory_order_relaxed);
}

void BlockCache::AccountOwnedSlow(int64_t bytes) {
  if (AcquireThreadSlot() != 0) {
    AccountOwned(bytes);
  } else {
    AddEstimate(bytes);
  }
}

void AccountOwnedSlow(BlockCache* cache, int64_t bytes) { cache->AccountOwnedSlow(bytes); }

void AddOwnedEstimate(BlockCache* cache, int64_t bytes) { cache->AddEstimate(bytes); }

void BlockCache::RefreshEstimate() {
  if (owned_ == nullptr) SetEstimate(CachedBytes());
}

void BlockCache::EnforceBudget(TakeBuffer& buffer) {
  if (owned_ != nullptr) {
    EnforceOwnedBudget(buffer);
    return;
  }
  if (!OverBudget(0)) return;
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  // First what no CPU holds, then every CPU's victims, then whole CPU caches, recounting
  // after each step.
  DrainTransfers(buffer, &blocks, &bytes);
  RefreshEstimate();
  for (int pass = 0; pass < 2 && OverBudget(0); ++pass) {
    for (int cpu = 0; cpu < num_cpus_ && OverBudget(0); ++cpu) {
      CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
      if (c == nullptr || c->LooksEmpty()) continue;
      EmptyCpu(cpu, c, /*victims_only=*/pass == 0, buffer, &blocks, &bytes);
      RefreshEstimate();
    }
  }
  over_budget_blocks_.fetch_add(blocks, std::memory_order_relaxed);
  over_budget_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

uint64_t BlockCache::OwnedExcess() const {
  const uint64_t mine = CachedBytes();
  uint64_t excess = 0;
  if (policy_.max_cached_bytes != 0 && mine > policy_.max_cached_bytes) {
    excess = mine - policy_.max_cached_bytes;
  }
  const uint64_t limit = ProcessLimit().load(std::memory_order_relaxed);
  const int64_t process = g_process_estimate.load(std::memory_order_relaxed);
  if (limit != 0 && process > 0 && static_cast<uint64_t>(process) > limit) {
    excess = std::max(excess, std::min(static_cast<uint64_t>(process) - limit, mine));
  }
  return excess;
}

void BlockCache::EnforceOwnedBudget(TakeBuffer& buffer) {
  uint64_t excess = OwnedExcess();
  if (excess == 0) return;
  // The bytes of a block in a cache, read under its column's lock (a remote operation) or its
  // TransferStack's, unpoisoned for the read.
  auto bytes_of = [this](void* block) {
    UnpoisonCached(block, class_bytes_[0]);
    const uint64_t bytes = releaser_->OwnedBytes(0, block);
    PoisonCached(block, class_bytes_[0]);
    return bytes;
  };
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  std::vector<uint64_t> sizes;
  // Pass 0 chooses among the idle blocks (every CPU's victims, and the TransferStack, which
  // no CPU holds), pass 1 among all. Each pass: the sizes of the candidates (read in place,
  // under each column's or the TransferStack's lock), the size above which (and how many at
  // which) blocks go so that the largest leave first until the excess is met, then the same
  // walk taking those. Blocks that changed hands in between are judged by the same threshold.
  // What stays keeps its generation, so it still leaves within two epochs.
  for (int pass = 0; pass < 2 && excess != 0; ++pass) {
    const bool victims_only = pass == 0;
    try {
      size_t expect = transfers_[0].PrimaryCount() + transfers_[0].VictimCount();
      for (int cpu = 0; cpu < num_cpus_; ++cpu) {
        if (const CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) {
          expect += c->VictimCount(0) + (victims_only ? 0 : c->PrimaryCount(0));
        }
      }
      sizes.clear();
      sizes.reserve(expect + expect / 4 + 64);  // No allocation under a lock below.
    } catch (const std::bad_alloc&) {
      return;  // Next epoch.
    }
    auto note = [&](void* block) {
      if (sizes.size() < sizes.capacity()) sizes.push_back(bytes_of(block));
    };
    transfers_[0].ForEachBlock(note);
    for (int cpu = 0; cpu < num_cpus_; ++cpu) {
      CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
      if (c == nullptr || c->LooksEmpty()) continue;
      Remote(cpu, c, [&](CpuCache* cc) {
        cc->lock.AssertHeld();  // Remote() holds it.
        cc->ForEachBlock(0, victims_only, note);
        return 0;
      });
    }
    std::sort(sizes.begin(), sizes.end(), std::greater<>());
    uint64_t threshold = ~uint64_t{0};
    size_t at_threshold = 0;  // How many blocks of exactly `threshold` bytes go.
    uint64_t chosen = 0;
    for (uint64_t size : sizes) {
      if (chosen >= excess) break;
      chosen += size;
      if (size != threshold) {
        threshold = size;
        at_threshold = 0;
      }
      ++at_threshold;
    }
    auto take = [&](void* block) {
      const uint64_t size = bytes_of(block);
      if (size > threshold) return true;
      if (size != threshold || at_threshold == 0) return false;
      --at_threshold;
      return true;
    };
    const size_t room = std::min(buffer.blocks.size(), kTakeChunk);  // Closed briefly.
    size_t n;
    do {
      n = transfers_[0].TakeIf(take, buffer.blocks.data(), room);
      bytes += ReleasePaced(buffer, 0, buffer.blocks.data(), n);
      blocks += n;
    } while (n == room);
    for (int cpu = 0; cpu < num_cpus_; ++cpu) {
      CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
      if (c == nullptr || c->LooksEmpty()) continue;
      c->changes.fetch_add(1, std::memory_order_relaxed);  // Counts go down without hits.
      do {
        n = Remote(cpu, c, [&](CpuCache* cc) {
          cc->lock.AssertHeld();  // Remote() holds it.
          return cc->TakeIf(0, victims_only, take, buffer.blocks.data(), room);
        });
        bytes += ReleasePaced(buffer, 0, buffer.blocks.data(), n);
        blocks += n;
      } while (n == room);
    }
    excess = OwnedExcess();
  }
  CountOverBudget(blocks, bytes);
}

uint64_t BlockCache::CachedBytes() const {
  if (owned_ != nullptr) {
    int64_t bytes = estimate_.load(std::memory_order_relaxed);
    for (uint32_t slot = 0; slot < kThreadSlots; ++slot) {
      bytes += owned_[slot].bytes.load(std::memory_order_relaxed);
    }
    return static_cast<uint64_t>(std::max<int64_t>(bytes, 0));
  }
  uint64_t bytes = 0;
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    const CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      bytes += (uint64_t{c->PrimaryCount(cls)} + c->VictimCount(cls)) * class_bytes_[cls];
    }
  }
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    bytes += (uint64_t{transfers_[cls].PrimaryCount()} + transfers_[cls].VictimCount()) *
             class_bytes_[cls];
  }
  return bytes;
}

}  // namespace internal
}  // namespace syncpool
