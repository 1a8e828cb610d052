// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/block_cache.h
// -----------------------------------------------------------------------------
//
// The caching policy shared by Pool<T> and PoolResource: per-CPU caches of opaque blocks in
// size classes, two generations each, aged by a Sweeper. Not part of syncpool's API.
//
// Three modes, fixed per cache at construction (all serve the same API and policy; which one
// a cache gets: ChooseCacheMode(), cache_policy.h). Each mode's protocol is stated once, where
// it is carried out:
//   - rseq per-CPU: percpu_rseq.h.
//   - per-thread, one column per thread slot instead of per CPU: local_cache.h (the slots:
//     thread_slots.h).
//   - locked per-CPU: every operation takes the CPU cache's lock, and the inline paths always
//     fail over to the slow ones (cpu_cache.h).
// In every mode the inline paths try the sequence first (it fails at once outside the rseq
// mode: no open_capacity is ever nonzero there), then, in the per-thread mode only, the
// thread's column.
//
// Policy, per size class:
//   - Get(cls): the caller's CPU's primary generation (the inline fast path), then its victim
//     generation (both local operations); then the class's TransferStack (a batch of up to
//     Batch(cls) blocks, the extra ones pushed onto the caller's CPU); otherwise nullptr, and
//     the caller asks New or its upstream resource (a miss). A Get never touches another
//     CPU's cache: no lock, no fence, nothing that could make another thread wait.
//   - Put(cls, block): the caller's CPU's primary generation. When it is full, the CPU's
//     capacity for the class doubles (up to its maximum, and while the budgets allow), so a
//     CPU's cache grows to the working set it sees; at the maximum, a batch of Batch(cls)
//     blocks moves from it to the TransferStack (local pops, then the stack's lock) and the
//     block takes their place; what the TransferStack cannot hold is released at once through
//     the BlockReleaser (a spill).
//   - Capacities shrink back (halving, down to where they started) at every epoch that saw no
//     Put find the stack full (cpu_cache.h), so an idle class's cache is small again a few
//     epochs after its burst, and the retention policy releases the blocks themselves.
//   - SweepEpoch(): per CPU and class, and for each TransferStack, release the victim
//     generation and make the primary the victim (see sweeper.h).
// Why this shape: blocks move between CPUs (a producer thread feeding a consumer thread, a
// thread that migrated) through the TransferStack, under one short lock per batch, and never
// by taking another CPU's working set: a remote operation costs an interprocessor interrupt
// (the membarrier fence), which is microseconds in a virtual machine, and a CPU whose working
// set is taken takes it back (docs/design.md, "Both modes"). Blocks a CPU no longer uses leave with the epochs instead (a CPU nobody used
// during an epoch is drained). Everything stays bounded: per class, 2 * max_capacity blocks
// per CPU and 2 * TransferCapacity(cls) in the TransferStack.
// Blocks are released (returned upstream or destroyed) by the BlockReleaser, never with a
// per-CPU lock held or a cache closed to sequences.
//
// Thread safety: Get, Put, SweepEpoch, Drain and Snapshot may run concurrently from any
// threads; cpu_cache.h and percpu_rseq.h give the protocol between local and remote
// operations. The BlockCache must not be destroyed while another thread uses it.

#ifndef SYNCPOOL_SRC_BLOCK_CACHE_H_
#define SYNCPOOL_SRC_BLOCK_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/config.h"
#include "absl/base/optimization.h"
#include "src/sweeper_access.h"
#include "src/block_releaser.h"
#include "src/cache_policy.h"
#include "src/cpu.h"
#include "src/cpu_cache.h"
#include "src/fork.h"
#include "syncpool/internal/local_cache.h"
#include "src/pages.h"
#include "syncpool/internal/percpu_rseq.h"
#include "src/sweepable.h"
#include "src/thread_slots.h"
#include "src/transfer_stack.h"
#include "syncpool/options.h"
#include "syncpool/stats.h"

namespace syncpool {
namespace internal {

class BlockCache final : public Sweepable, public ThreadSlotUser {
 public:
  using Policy = CachePolicy;

  // `class_bytes[c]` is the size of a block of class c (for statistics and budgets) and
  // `capacities[c]` how many blocks of class c one CPU caches per generation to begin with;
  // each CPU's capacity grows up to policy.max_capacities[c] (empty: no growth). Blocks go back
  // through `releaser`, which must outlive the cache. `sweeper` is joined on first use. The
  // rseq mode is used when `allow_rseq` and RseqUsable().
  BlockCache(std::vector<size_t> class_bytes, std::vector<uint32_t> capacities,
             BlockReleaser* releaser, SweepRegistry* sweeper, bool allow_rseq = true,
             Policy policy = Policy());
  // The same, joining `sweeper`'s registry (SweeperAccess::Registry()).
  BlockCache(std::vector<size_t> class_bytes, std::vector<uint32_t> capacities,
             BlockReleaser* releaser, Sweeper* sweeper, bool allow_rseq = true,
             Policy policy = Policy())
      : BlockCache(std::move(class_bytes), std::move(capacities), releaser,
                   SweeperAccess::Registry(*sweeper), allow_rseq, std::move(policy)) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // BlockCache::~BlockCache()
  //
  // Leaves the sweeper (waiting for a sweep that is visiting this cache) and releases every
  // cached block on the calling thread.
  ~BlockCache();

  // BlockCache::TryGet()
  //
  // The inline fast path of Get(): one restartable sequence on the caller's CPU's primary
  // generation. Returns nullptr whenever the sequence cannot serve the call (an empty stack,
  // the locked mode, a cache not created yet or closed by a remote operation, the sequences
  // held closed); the caller then calls GetSlow(), which counts the miss, if any.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* TryGet(size_t cls) {
    return TryGetAt(cls, Row(cls));
  }

  // BlockCache::TryGetAt(), BlockCache::GetOr()
  //
  // LocalCache::TryGetAt() and LocalCache::GetOr() (local_cache.h) on this cache.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* TryGetAt(size_t cls, char* row) {
    return local_.TryGetAt(cls, row);
  }
  template <RseqOffsets kOffsets = RseqOffsets::kInRegisters, typename OnHit, typename Otherwise>
  ABSL_ATTRIBUTE_ALWAYS_INLINE auto GetOr(size_t cls, char* row, OnHit on_hit,
                                          Otherwise otherwise) {
    return local_.GetOr<kOffsets>(cls, row, on_hit, otherwise);
  }
  template <RseqOffsets kOffsets = RseqOffsets::kInRegisters, typename Otherwise>
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* GetOr(size_t cls, char* row, Otherwise otherwise) {
    return local_.GetOr<kOffsets>(cls, row, otherwise);
  }

  // BlockCache::GetSlow()
  //
  // Get() without its fast path (out of line).
  void* GetSlow(size_t cls);

  // BlockCache::Get()
  //
  // A cached block of class `cls`, or nullptr (a miss, counted) when no cache has one.
  // A block returned here was handed to Put() by some thread, and that Put() happens before
  // this Get() returns.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Get(size_t cls) {
    return GetOr(cls, Row(cls), [this, cls] { return GetSlow(cls); });
  }

  // BlockCache::TryPut()
  //
  // The inline fast path of Put(): one restartable sequence. Returns false, keeping nothing,
  // whenever it cannot cache the block (as TryGet(), or a full stack); the caller then calls
  // PutSlow().
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryPut(size_t cls, void* block) {
    return TryPutAt(cls, Row(cls), block);
  }

  // BlockCache::TryPutAt()
  //
  // LocalCache::TryPutAt() (local_cache.h) on this cache.
  template <RseqOffsets kOffsets = RseqOffsets::kInRegisters>
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryPutAt(size_t cls, char* row, void* block) {
    return local_.TryPutAt<kOffsets>(cls, row, block);
  }

  // BlockCache::PutSlow()
  //
  // Put() without its fast path (out of line). REQUIRES: TryPut(cls, block) failed just
  // before (under AddressSanitizer it poisoned the block).
  void PutSlow(size_t cls, void* block);

  // BlockCache::Put()
  //
  // Caches `block` of class `cls`, or releases it at once when this CPU's cache is full.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Put(size_t cls, void* block) {
    if (ABSL_PREDICT_TRUE(TryPut(cls, block))) return;
    PutSlow(cls, block);
  }

  // BlockCache::PutBatch()
  //
  // Put() of `blocks[0]`, then `blocks[1]`, ... `blocks[n - 1]` (which the next Get() on this
  // CPU pops first), for slow paths that hand the cache a batch: one sequence (RseqPushBatch())
  // or one owner's operation (ThreadPushBatch()) pushes as many as fit, and Put() takes the rest.
  void PutBatch(size_t cls, void* const* blocks, size_t n);

  // Sweepable::SweepEpoch()
  //
  // Per CPU: a CPU whose cache saw no Get, Put or spill since the last epoch is drained; the
  // others are aged by the retention policy. Then each TransferStack is aged (Go's policy).
  // A pressure epoch drains everything instead. Last, budgets: while this cache or the process
  // is over its budget, TransferStacks, then victim generations, then whole CPU caches are
  // released.
  void SweepEpoch(const Epoch& epoch) override;

  // Sweepable::LockForFork(), Sweepable::UnlockAfterFork(): every CPU cache's lock and every
  // TransferStack's. The sequences take no lock and commit with one store, so a thread that
  // was inside one when another forked leaves nothing half done in the child.
  void LockForFork() override;
  void UnlockAfterFork() override;
  // Sweepable::Park(): when nothing is cached, closes every column (a remote operation each,
  // left closed), so that the next inline operation takes a slow path, which reopens it and
  // calls the sweeper's WakeIfParked() (the start of GetSlow() and PutSlow()).
  bool Park() override;

  // BlockCache::CachedBytes()
  //
  // The bytes cached now, summed without stopping anyone (approximate, as statistics are).
  uint64_t CachedBytes() const;

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

  // BlockCache::AccountOwned()
  //
  // LocalCache::AccountOwned() (local_cache.h) on this cache.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void AccountOwned(int64_t bytes) { local_.AccountOwned(bytes); }

  // BlockCache::OverBudget()
  //
  // Whether caching `extra` more bytes would take this cache or the process over its byte
  // budget (read without stopping anyone: the estimates of other caches lag).
  bool OverBudget(uint64_t extra) const;

  // BlockCache::CountOverBudget()
  //
  // `n` blocks of `bytes` in all that the owner released instead of caching, for the budgets.
  void CountOverBudget(uint64_t n, uint64_t bytes) {
    over_budget_blocks_.fetch_add(n, std::memory_order_relaxed);
    over_budget_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }

  // BlockCache::Row()
  //
  // Where the stacks of class `cls` lie in the region: CPU `cpu`'s at Row(cls) +
  // (cpu << kClassStackShift).
  char* Row(size_t cls) const { return region_ + cls * class_stride_; }

  // BlockCache::local()
  //
  // What the inline paths read (local_cache.h), for a face to keep by value.
  const LocalCache& local() const { return local_; }

  // BlockCache::ClosedLocal()
  //
  // local() over a region of stacks that never open (zero-filled, never written but for the
  // per-thread owner's busy flags), so that every inline operation of a face that keeps it
  // fails over to the face's slow path: how debug checks see every call without a mode of
  // their own. The slow paths (GetSlow(), PutSlow(), Get(), Put()) still work on the cache's
  // own region. The closed region is one for the whole process, mapped on the first call (may
  // throw std::bad_alloc) and never unmapped.
  LocalCache ClosedLocal();

  // BlockCache::num_classes()
  size_t num_classes() const { return class_bytes_.size(); }

  // BlockCache::uses_rseq()
  //
  // Whether local operations are restartable sequences.
  bool uses_rseq() const { return mode_.rseq; }

  // BlockCache::per_thread()
  //
  // Whether the cache keeps a column per thread (thread_slots.h) instead of per CPU.
  bool per_thread() const { return mode_.per_thread; }

  // BlockCache::mode()
  //
  // The mode, its name and why it was chosen.
  const CacheModeChoice& mode() const { return mode_; }

  // ThreadSlotUser: a thread's exit moves its column to the TransferStacks; a fork child
  // clears the busy flags.
  void FlushSlot(uint32_t slot) override;
  void ResetBusyAfterFork() override;

  // Most blocks one move between a CPU's stack and the TransferStack (or the releaser)
  // carries.
  static constexpr size_t kMaxTransferBatch = 64;

  // BlockCache::Batch()
  //
  // How many blocks of class `cls` move at once between a CPU's cache and the TransferStack:
  // half the per-CPU capacity, at least 1, at most kMaxTransferBatch.
  size_t Batch(size_t cls) const;

  // BlockCache::TransferCapacity()
  //
  // How many blocks of class `cls` the TransferStack holds per generation: twice the per-CPU
  // starting capacity.
  size_t TransferCapacity(size_t cls) const { return transfers_[cls].capacity(); }

 private:
  CpuCache* CacheOf(int cpu);  // Creates the cache on first use.
  // In a fork child, once: starts the sweeper's thread again (sweeper.h).
  void AfterFork();
  void* FromTransfer(size_t cls);
  // The rseq mode: a Put on `cpu` found class `cls` of `c` full. Grows its capacity, under
  // its lock (inside a remote operation when the arrays must move: cpu_cache.h), unless it is
  // at its maximum or the budgets forbid. Returns whether it grew.
  bool TryGrow(int cpu, CpuCache* c, size_t cls);
  // Whether a full stack of class `cls` of `c` with capacity `cap` may grow: below its
  // maximum, the CPU's capacities with `cap` more blocks within policy_.max_cpu_bytes, and the
  // budgets leave room for the stack full at twice that. Exact under `c`'s lock (the
  // capacities change under it only); without it, a hint.
  bool GrowthAllowed(const CpuCache* c, size_t cls, uint32_t cap) const;
  // Hands `n` blocks moved out of a full CPU cache (`c`, or nullptr) to the TransferStack and
  // spills what it cannot hold.
  void ToTransfer(size_t cls, CpuCache* c, void* const* blocks, size_t n);
  // Runs `op(cache)` on `cpu`'s cache as a remote operation: under its lock and, in the rseq
  // mode, with the cache closed to sequences and the CPU fenced (see percpu_rseq.h); in the
  // per-thread mode closed, all threads fenced, the owner out of its operation
  // (thread_slots.h). Without `reopen` the cache stays closed (Park()).
  template <typename Op>
  auto Remote(int cpu, CpuCache* c, Op op, bool reopen = true);
  // The owner's slow path in the per-thread mode, under `c`'s lock: reopens a column that a
  // park left closed (no remote operation holds it: they hold the lock from close to reopen).
  static void ReopenForOwner(CpuCache* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->lock) {
    if (!c->IsOpenToSequences(0)) c->OpenToSequences();
  }
  // Blocks taken out of one CPU's cache, class by class, to be released after the remote
  // operation: `counts[cls]` blocks of each class, one class after the other.
  struct TakeBuffer {
    std::vector<void*> blocks;
    std::vector<uint32_t> counts;
    std::vector<uint64_t> totals;  // Per class, over all the remote operations of one take.
    uint64_t released_bytes = 0;   // Over all the remote operations of one take.
    // The sweep's pacer (SweepEpoch() sets it in its own buffer); nullptr elsewhere (drains
    // in destructors, Trim(), Clear()), which run without pausing.
    SweepPacer* pacer = nullptr;
  };
  // At most this many blocks per remote operation of TakeAndRelease(), and per piece of
  // release between two of the pacer's Pause() calls: a cache is closed for the time it takes
  // to copy 4096 pointers, and a pause is considered every 256 releases (a few microseconds).
  static constexpr size_t kTakeChunk = 4096;
  static constexpr size_t kReleaseChunk = 256;
  // Takes `take(cache, cls, out, room)` blocks of every class of `cpu`'s cache into `buffer`
  // as one remote operation, then releases them with nothing held; again until a remote
  // operation leaves room in the buffer (caches may hold more than one buffer).
  template <typename Take>
  void TakeAndRelease(int cpu, CpuCache* c, Take take, TakeBuffer& buffer);
  // Releases `n` blocks of class `cls`; returns their bytes (what they own, for a cache with
  // CachePolicy::owned_bytes, which stops counting them here).
  uint64_t Release(size_t cls, void* const* blocks, size_t n);
  // Release() in pieces of kReleaseChunk, with `buffer.pacer`'s Pause() after each.
  // REQUIRES: no lock held, every cache closed by the caller open again.
  uint64_t ReleasePaced(TakeBuffer& buffer, size_t cls, void* const* blocks, size_t n);
  // As one remote operation, takes both generations (or the victims only) of every class of
  // `cpu`'s cache `c`, releases them, and adds them to `*blocks` and `*bytes`.
  void EmptyCpu(int cpu, CpuCache* c, bool victims_only, TakeBuffer& buffer, uint64_t* blocks,
             uint64_t* bytes);
  // Drains every CPU cache and TransferStack; adds what left to `blocks` and `bytes`.
  void DrainCounting(TakeBuffer& buffer, uint64_t* blocks, uint64_t* bytes);
  // Releases both generations of every TransferStack; adds what left to `blocks` and `bytes`.
  void DrainTransfers(TakeBuffer& buffer, uint64_t* blocks, uint64_t* bytes);
  // Sets this cache's contribution to the process-wide estimate of cached bytes.
  void SetEstimate(uint64_t bytes);
  void AddEstimate(int64_t bytes);
  // SetEstimate(CachedBytes()), where the estimate is not kept by AccountOwned() instead.
  void RefreshEstimate();
  // AccountOwned() for a thread without a slot yet: takes one, or adds to estimate_.
  void AccountOwnedSlow(int64_t bytes);
  friend void AccountOwnedSlow(BlockCache* cache, int64_t bytes);
  friend void AddOwnedEstimate(BlockCache* cache, int64_t bytes);
  // EnforceBudget() where owned bytes are counted: how far over its budgets the cache is, and
  // the release of the largest idle blocks (victims and the TransferStack), then of the
  // largest of all, until within.
  uint64_t OwnedExcess() const;
  void EnforceOwnedBudget(TakeBuffer& buffer);
  // The epoch's sizing step for a CPU cache that holds nothing: every class back to its
  // starting capacity unless a Put found it full since the last epoch (a remote operation),
  // then the slot pages above the capacities go back to the system.
  void ShrinkEmpty(int cpu, CpuCache* c);
  // Releases until within budget (the end of an epoch); counts what left as over budget.
  void EnforceBudget(TakeBuffer& buffer);

  // When class `cls` of `c` reads as closed to sequences (a remote operation holds the cache),
  // waits for the remote operation to end by taking the cache's lock, and opens the cache.
  // REQUIRES: the rseq mode, `c` is the cache of a CPU below g_rseq_cpu_limit.
  static void WaitAndOpen(CpuCache* c, size_t cls) {
    if (ABSL_PREDICT_FALSE(!c->IsOpenToSequences(cls))) WaitAndOpenSlow(c);
  }
  static void WaitAndOpenSlow(CpuCache* c);

  // Decided first: the mode sets the number of columns.
  const CacheModeChoice mode_;
  // The region of ClassStacks: a row per class (Row()), in each 128 bytes per column below
  // num_cpus_ (a CPU id, or in the per-thread mode a thread slot). Zero-filled (every stack
  // closed) until CacheOf() builds a column's cache. For the inline paths; mapping_ owns it.
  MappedRegion mapping_;
  char* const region_;
  const size_t class_stride_;  // num_cpus_ << kClassStackShift.
  const int num_cpus_;  // Columns: CPU ids, or thread slots in the per-thread mode.
  // INVARIANT: an entry goes from nullptr to the CpuCache built in the region once (release
  // store, under create_mu_) and stays.
  const std::unique_ptr<std::atomic<CpuCache*>[]> cpus_;
  // Serializes the building of CPU caches (once per CPU; taken around fork()).
  std::mutex create_mu_;
  const std::vector<size_t> class_bytes_;
  const std::vector<uint32_t> capacities_;      // Per CPU and generation, to begin with.
  const std::vector<uint32_t> max_capacities_;  // Per CPU and generation, at most.
  const size_t total_capacity_;  // Starting slots of one generation of one CPU, all classes.
  BlockReleaser* const releaser_;
  SweepRegistry* const sweeper_;
  // Set once Register() returned (under the registrations' lock, block_cache.cc).
  std::atomic<bool> registered_flag_{false};
  // internal::g_fork_generation as this cache last saw it.
  std::atomic<uint64_t> fork_generation_{g_fork_generation.load(std::memory_order_relaxed)};

  // One per class, `class_bytes_.size()` of them.
  const std::unique_ptr<TransferStack[]> transfers_;
  // SweepEpoch()'s own buffers (sweeps of one cache are serialized): blocks copied out, and
  // the arrays AgeDetach() detached, per class.
  struct Detached {
    void** slots = nullptr;
    uint32_t count = 0;
  };
  TakeBuffer sweep_buffer_;
  std::vector<Detached> detached_;
  // Gets served by a TransferStack (hits that no CPU cache counted).
  std::atomic<uint64_t> transfer_hits_{0};
  const Policy policy_;
  // What this cache holds by the last count (every epoch), plus what moved into its
  // TransferStacks since: its share of the process-wide estimate.
  std::atomic<int64_t> estimate_{0};
  // CachePolicy::owned_bytes: one counter per thread slot (AccountOwned()), a line each, in
  // pages touched only as slots use them; null otherwise.
  std::unique_ptr<MappedRegion> owned_region_;
  OwnedCount* owned_ = nullptr;
  int64_t owned_flush_ = 0;
  std::atomic<uint64_t> over_budget_blocks_{0};
  std::atomic<uint64_t> over_budget_bytes_{0};
  std::atomic<uint64_t> pressure_blocks_{0};
  std::atomic<uint64_t> pressure_bytes_{0};
  // Blocks moved from CPU caches into the TransferStacks (Stats::shared_moves).
  std::atomic<uint64_t> shared_moves_{0};
  // Spills, and misses, of callers without a CPU cache (it could not be created, or a thread
  // found no free slot).
  std::atomic<uint64_t> orphan_spills_{0};
  std::atomic<uint64_t> orphan_misses_{0};

  // What the inline paths read (set last in the constructor, from the fields above).
  LocalCache local_;
  // ClosedLocal()'s region where the process's shared one is too small (a cache with more
  // classes than a PoolResource has: tests); null otherwise.
  std::unique_ptr<MappedRegion> closed_mapping_;

  // Written by the sweeping thread only; read by Snapshot().
  std::atomic<uint64_t> epochs_{0};
  std::atomic<uint64_t> swept_blocks_{0};
  std::atomic<uint64_t> swept_bytes_{0};
};


}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_BLOCK_CACHE_H_
