// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The caching policy's slow paths: creating a CPU's cache, the victim generation, stealing,
// spilling, and the sweeper's epoch. See block_cache.h for the policy and cpu_cache.h for the
// locking protocol these functions follow.

#include "syncpool/internal/block_cache.h"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

namespace syncpool {
namespace internal {
namespace {

uint32_t MaxOf(const std::vector<uint32_t>& capacities) {
  uint32_t max = 0;
  for (uint32_t c : capacities) max = std::max(max, c);
  return max;
}

}  // namespace

BlockCache::BlockCache(std::vector<size_t> class_bytes, std::vector<uint32_t> capacities,
                       BlockReleaser* releaser, Sweeper* sweeper)
    : num_cpus_(NumCpus()),
      cpus_(new std::atomic<CpuCache*>[static_cast<size_t>(num_cpus_)]),
      class_bytes_(std::move(class_bytes)),
      capacities_(std::move(capacities)),
      max_capacity_(MaxOf(capacities_)),
      releaser_(releaser),
      sweeper_(sweeper) {
  if (class_bytes_.empty() || class_bytes_.size() != capacities_.size()) {
    throw std::invalid_argument("syncpool: a cache needs one capacity per size class");
  }
  for (int cpu = 0; cpu < num_cpus_; ++cpu) cpus_[cpu].store(nullptr, std::memory_order_relaxed);
}

BlockCache::~BlockCache() {
  // After Unregister() returns no sweep touches this cache, and REQUIRES says no other thread
  // does either, so the caches can be drained and freed.
  if (registered_flag_.load(std::memory_order_acquire)) sweeper_->Unregister(this);
  Drain();
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    if (CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) CpuCache::Destroy(c);
  }
}

CpuCache* BlockCache::CacheOf(int cpu) {
  if (static_cast<unsigned>(cpu) >= static_cast<unsigned>(num_cpus_)) cpu %= num_cpus_;
  CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
  if (c != nullptr) return c;
  // First use of this CPU's cache. Join the sweeper (once per BlockCache) so the thread starts
  // only when a cache is actually used.
  std::call_once(registered_, [this] {
    sweeper_->Register(this);
    registered_flag_.store(true, std::memory_order_release);
  });
  // Racing creators: one CAS wins and publishes (release); the loser frees its copy.
  CpuCache* fresh = CpuCache::Create(capacities_.data(), capacities_.size());
  if (cpus_[cpu].compare_exchange_strong(c, fresh, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
    return fresh;
  }
  CpuCache::Destroy(fresh);
  return c;
}

void BlockCache::CountMiss() {
  CacheOf(CurrentCpu())->misses.fetch_add(1, std::memory_order_relaxed);
}

void* BlockCache::GetSlow(size_t cls, int cpu) {
  CpuCache* c = CacheOf(cpu);
  void* block;
  {
    SpinLockHolder l(&c->lock);
    block = c->PopPrimary(cls);  // The fast path may not have run (no cache yet).
    if (block == nullptr) block = c->PopVictim(cls);
    if (block != nullptr) c->CountHit();
  }
  if (block != nullptr) return block;
  if (num_cpus_ > 1) {
    block = Steal(cls, cpu);
    if (block != nullptr) {
      c->steals.fetch_add(1, std::memory_order_relaxed);
      return block;
    }
  }
  c->misses.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void* BlockCache::Steal(size_t cls, int cpu) {
  // Remote operation: takes the victim's lock like any local operation. The counts are read
  // without the lock first so that empty caches cost one load each; a count that was stale
  // only makes the steal fail or miss a block, both harmless.
  for (int i = 1; i < num_cpus_; ++i) {
    int other = cpu + i;
    if (other >= num_cpus_) other -= num_cpus_;
    CpuCache* o = cpus_[other].load(std::memory_order_acquire);
    if (o == nullptr || (o->PrimaryCount(cls) == 0 && o->VictimCount(cls) == 0)) continue;
    SpinLockHolder l(&o->lock);
    void* block = o->PopPrimary(cls);
    if (block == nullptr) block = o->PopVictim(cls);
    if (block != nullptr) {
      o->CountHit();
      return block;
    }
  }
  return nullptr;
}

void BlockCache::PutSlow(size_t cls, void* block, int cpu) {
  CpuCache* c = CacheOf(cpu);
  bool kept;
  {
    SpinLockHolder l(&c->lock);
    kept = c->PushPrimary(cls, block);
  }
  if (kept) return;
  // Spill: this CPU's primary generation is full. Release the block now, outside the lock.
  c->spills.fetch_add(1, std::memory_order_relaxed);
  Release(cls, &block, 1);
}

void BlockCache::SweepEpoch() {
  // Remote operation on every CPU: per class, copy the victim generation out and age the
  // primary under that CPU's lock, then release the copies with no lock held.
  std::vector<void*> out(max_capacity_);
  size_t blocks = 0;
  size_t bytes = 0;
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      // A class that reads empty is skipped; a block pushed concurrently is aged next epoch.
      if (c->PrimaryCount(cls) == 0 && c->VictimCount(cls) == 0) continue;
      size_t n;
      {
        SpinLockHolder l(&c->lock);
        n = c->Age(cls, out.data());
      }
      Release(cls, out.data(), n);
      blocks += n;
      bytes += n * class_bytes_[cls];
    }
  }
  swept_blocks_.fetch_add(blocks, std::memory_order_relaxed);
  swept_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  epochs_.fetch_add(1, std::memory_order_relaxed);
}

void BlockCache::Drain() {
  std::vector<void*> out(2 * size_t{max_capacity_});
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      size_t n;
      {
        SpinLockHolder l(&c->lock);
        n = c->TakeAll(cls, out.data());
      }
      Release(cls, out.data(), n);
    }
  }
}

Stats BlockCache::Snapshot() const {
  Stats s;
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    const CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    s.hits += c->Hits();
    s.misses += c->misses.load(std::memory_order_relaxed);
    s.steals += c->steals.load(std::memory_order_relaxed);
    s.spills += c->spills.load(std::memory_order_relaxed);
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      const uint64_t primary = c->PrimaryCount(cls);
      const uint64_t victim = c->VictimCount(cls);
      s.primary_blocks += primary;
      s.primary_bytes += primary * class_bytes_[cls];
      s.victim_blocks += victim;
      s.victim_bytes += victim * class_bytes_[cls];
    }
  }
  // Steals count a hit on the CPU stolen from (in Hits()) and a steal on the thief's.
  s.swept_blocks = swept_blocks_.load(std::memory_order_relaxed);
  s.swept_bytes = swept_bytes_.load(std::memory_order_relaxed);
  s.epochs = epochs_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace internal
}  // namespace syncpool
