// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/cache_policy.h
// -----------------------------------------------------------------------------
//
// What a BlockCache is asked to be, decided before it exists: its policy (CachePolicy), its
// mode (ChooseCacheMode()), and its capacities (SizingOf()), each from the Options of the pool
// or resource that owns it. Not part of syncpool's API. block_cache.h says what the policy
// means at run time.

#ifndef SYNCPOOL_SRC_CACHE_POLICY_H_
#define SYNCPOOL_SRC_CACHE_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "syncpool/options.h"

namespace syncpool {
namespace internal {

// CachePolicy
//
// A cache's policy: its mode, retention, budgets and how far its capacities may grow.
struct CachePolicy {
  // Which mode the cache asks for (ChooseCacheMode()).
  CacheMode mode = CacheMode::kAuto;
  Retention retention = Retention::kWorkingSet;
  size_t max_cached_bytes = 0;  // 0: no budget of its own.
  // How far each class's per-CPU capacity may grow; empty: it stays where it starts.
  std::vector<uint32_t> max_capacities;
  // The most bytes the capacities of one CPU's cache may add up to (per generation, over all
  // classes) for growth to go on; 0: no such bound. Capacities never shrink below where they
  // started to meet it.
  size_t max_cpu_bytes = 0;
  // Whether bytes are what the blocks own (BlockReleaser::OwnedBytes()), not their class
  // sizes: the owner counts each block entering and leaving (AccountOwned()), the budgets and
  // statistics use that count, and an epoch over budget releases the largest idle blocks
  // first. One class only (Pool<T>).
  bool owned_bytes = false;
  // Classes [0, direct_release_classes) have no TransferStack: the batch a full CPU stack
  // moves out goes straight to the BlockReleaser, which keeps their free blocks in address
  // order and each on the CPU's side that took it (PoolResource's spans, src/spans.h).
  size_t direct_release_classes = 0;
};

// The mode a cache runs in, and why (for Stats and reports).
struct CacheModeChoice {
  bool rseq = false;
  bool per_thread = false;
  const char* name = "";
  const char* why = "";
};

// ChooseCacheMode()
//
// Without `allow_rseq` (tests of the per-CPU policy), the locked per-CPU mode.
// Otherwise the rseq per-CPU mode where `requested` allows it (kAuto, kPerCpu; SYNCPOOL_MODE
// decides for kAuto) and RseqUsable(); otherwise the per-thread mode where asked for or where
// kAuto found no sequences, if its fence can be made; otherwise the locked per-CPU mode.
CacheModeChoice ChooseCacheMode(bool allow_rseq, CacheMode requested);

// PolicyOf()
//
// The CachePolicy that `options` (validated: ValidateOptions()) ask for, for classes of
// `class_bytes` bytes (see SizingOf(), which it calls).
CachePolicy PolicyOf(const Options& options, const std::vector<size_t>& class_bytes);

// FitToBudget()
//
// Lowers `capacities` (per CPU and generation) so that every cache of every CPU and every
// TransferStack full stays within `budget` bytes (0: no budget), scaling them alike and
// keeping at least one block per class.
void FitToBudget(const std::vector<size_t>& class_bytes, size_t budget,
                 std::vector<uint32_t>& capacities);

// CacheSizing
//
// The per-CPU capacities of a cache's classes: where each starts and how far it may grow.
struct CacheSizing {
  std::vector<uint32_t> start;
  std::vector<uint32_t> max;
};

// SizingOf()
//
// The capacities that `options` ask for, for classes of `class_bytes` bytes: a class of size
// S grows to max(2, per_cpu_class_bytes / S) blocks, at most max_blocks_per_class, lowered to
// fit max_cached_bytes (FitToBudget()); it starts at max(2, kStartClassBytes / S) blocks, at
// most initial_blocks_per_class, and never above its maximum. `options` are validated
// (ValidateOptions()).
inline constexpr size_t kStartClassBytes = 64 * 1024;
CacheSizing SizingOf(const Options& options, const std::vector<size_t>& class_bytes);

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_CACHE_POLICY_H_
