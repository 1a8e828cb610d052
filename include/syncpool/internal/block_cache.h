// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/block_cache.h
// -----------------------------------------------------------------------------
//
// The caching policy shared by Pool<T> and PoolResource: per-CPU caches of opaque blocks in
// size classes, two generations each, aged by a Sweeper. Not part of syncpool's API.
//
// Two modes, fixed per cache at construction (both serve the same API and policy):
//   - rseq: local operations are restartable sequences (percpu_rseq.h); remote operations
//     stop the target CPU's cache, fence it, and work under its lock.
//   - locked: every operation takes the CPU cache's lock (cpu_cache.h). Used where rseq is
//     not available (see RseqUsable()) or when Options::allow_rseq is false.
//
// Policy:
//   - Get(cls): the caller's CPU's primary generation (the inline fast path), then its victim
//     generation, then the other CPUs' caches (primary first, then victim, scanning from the
//     next CPU id upwards and skipping caches whose counts read zero; up to kStealBatch blocks
//     are taken at once, the extra ones go to the caller's CPU), and otherwise nullptr: the
//     caller then asks New or its upstream resource (a miss).
//   - Put(cls, block): the caller's CPU's primary generation; when it is full the block is
//     released at once through the BlockReleaser (a spill). Spilling one block instead of
//     moving half the stack elsewhere keeps the cache bounded at
//     2 * capacity * classes * CPUs blocks with no shared structure to contend on.
//   - SweepEpoch(): per CPU and class, release the victim generation and make the primary the
//     victim (see sweeper.h).
// Blocks are released (returned upstream or destroyed) by the BlockReleaser, never with a
// per-CPU lock held or a cache stopped.
//
// Thread safety: Get, Put, SweepEpoch, Drain and Snapshot may run concurrently from any
// threads; cpu_cache.h and percpu_rseq.h give the protocol between local and remote
// operations. The BlockCache must not be destroyed while another thread uses it.

#ifndef SYNCPOOL_INTERNAL_BLOCK_CACHE_H_
#define SYNCPOOL_INTERNAL_BLOCK_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/optimization.h"
#include "syncpool/internal/cpu.h"
#include "syncpool/internal/cpu_cache.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace internal {

// How a cache gives blocks back: to an upstream resource, or by destroying objects.
class BlockReleaser {
 public:
  // BlockReleaser::Release()
  //
  // Releases `n` blocks of class `cls`. Called without any cache lock held, on the thread that
  // sweeps, spills or drains.
  virtual void Release(size_t cls, void* const* blocks, size_t n) = 0;

 protected:
  ~BlockReleaser() = default;
};

class BlockCache final : public Sweepable {
 public:
  // `class_bytes[c]` is the size of a block of class c (for statistics) and `capacities[c]` how
  // many blocks of class c one CPU caches per generation. Blocks go back through `releaser`,
  // which must outlive the cache. `sweeper` is joined on first use. The rseq mode is used when
  // `allow_rseq` and RseqUsable().
  BlockCache(std::vector<size_t> class_bytes, std::vector<uint32_t> capacities,
             BlockReleaser* releaser, Sweeper* sweeper, bool allow_rseq = true);
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // BlockCache::~BlockCache()
  //
  // Leaves the sweeper (waiting for a sweep that is visiting this cache) and releases every
  // cached block on the calling thread.
  ~BlockCache();

  // BlockCache::Get()
  //
  // A cached block of class `cls`, or nullptr (a miss, counted) when no cache has one.
  // A block returned here was handed to Put() by some thread, and that Put() happens before
  // this Get() returns. Inline: one restartable sequence in the rseq mode; everything else
  // (the locked mode included) is the out-of-line GetSlow().
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Get(size_t cls) {
#if SYNCPOOL_RSEQ_FAST_PATH
    if (ABSL_PREDICT_TRUE(rseq_) &&
        ABSL_PREDICT_TRUE(g_fake_cpu_users.load(std::memory_order_relaxed) == 0)) {
      void* block = RseqPopPrimary(cpus_.get(), num_cpus_, CpuCache::StackOffset(cls));
      if (ABSL_PREDICT_TRUE(block != nullptr)) return block;
    }
#endif
    return GetSlow(cls);
  }

  // BlockCache::Put()
  //
  // Caches `block` of class `cls`, or releases it at once when this CPU's cache is full.
  // Inline as Get().
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Put(size_t cls, void* block) {
#if SYNCPOOL_RSEQ_FAST_PATH
    if (ABSL_PREDICT_TRUE(rseq_) &&
        ABSL_PREDICT_TRUE(g_fake_cpu_users.load(std::memory_order_relaxed) == 0) &&
        ABSL_PREDICT_TRUE(RseqPush(cpus_.get(), num_cpus_, CpuCache::StackOffset(cls), block))) {
      return;
    }
#endif
    PutSlow(cls, block);
  }

  // Sweepable::SweepEpoch()
  void SweepEpoch() override;

  // BlockCache::Drain()
  //
  // Releases every cached block of every CPU on the calling thread.
  void Drain();

  // BlockCache::DrainOneByOne()
  //
  // Drain() without allocating: one remote operation per block. Drain() falls back to it
  // when it cannot allocate its buffer.
  void DrainOneByOne();

  // BlockCache::Snapshot()
  Stats Snapshot() const;

  // BlockCache::uses_rseq()
  //
  // Whether local operations are restartable sequences (else every operation locks).
  bool uses_rseq() const { return rseq_; }

  // Most blocks one steal takes from another CPU.
  static constexpr size_t kStealBatch = 16;

 private:
  CpuCache* CacheOf(int cpu);  // Creates the cache on first use.
  void* GetSlow(size_t cls);
  void* Steal(size_t cls, int cpu);
  void PutSlow(size_t cls, void* block);
  // Runs `op(cache)` on `cpu`'s cache as a remote operation: under its lock and, in the rseq
  // mode, with the cache stopped and fenced (see percpu_rseq.h).
  template <typename Op>
  auto Remote(int cpu, CpuCache* c, Op op);
  // Blocks taken out of one CPU's cache, class by class, to be released after the remote
  // operation: `counts[cls]` blocks of each class, one class after the other.
  struct TakeBuffer {
    std::vector<void*> blocks;
    std::vector<uint32_t> counts;
  };
  // As one remote operation, takes `take(cache, cls, out)` blocks of every class of `cpu`'s
  // cache into `buffer`, then releases them with nothing held.
  template <typename Take>
  void TakeAndRelease(int cpu, CpuCache* c, Take take, TakeBuffer& buffer);
  void Release(size_t cls, void* const* blocks, size_t n) {
    if (n != 0) releaser_->Release(cls, blocks, n);
  }

  const bool rseq_;
  const int num_cpus_;
  // INVARIANT: an entry goes from nullptr to a CpuCache once (release store) and stays.
  const std::unique_ptr<std::atomic<CpuCache*>[]> cpus_;
  const std::vector<size_t> class_bytes_;
  const std::vector<uint32_t> capacities_;
  const size_t total_capacity_;  // Slots of one generation of one CPU, all classes.
  BlockReleaser* const releaser_;
  Sweeper* const sweeper_;
  std::once_flag registered_;
  std::atomic<bool> registered_flag_{false};  // Set once Register() returned.

  // Written by the sweeping thread only; read by Snapshot().
  std::atomic<uint64_t> epochs_{0};
  std::atomic<uint64_t> swept_blocks_{0};
  std::atomic<uint64_t> swept_bytes_{0};
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_BLOCK_CACHE_H_
