// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A BlockCache's life: construction (its region of stacks, its TransferStacks, the mode
// chosen by cache_policy.cc), the CPU caches built on first use, fork, a thread's exit (its
// column flushed), parking, and destruction. The other jobs have files of their own:
// block_cache_slow.cc (the Get and Put slow paths), block_cache_epoch.cc (epochs, drains,
// statistics), block_cache_budget.cc (byte budgets and estimates), block_cache_remote.h (the
// remote operation every one of them uses). block_cache.h gives the policy; cpu_cache.h,
// percpu_rseq.h and thread_slots.h the protocols these functions follow.

#include "src/block_cache.h"

#include <algorithm>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "block_cache_remote.h"
#include "syncpool/internal/size_class.h"

namespace syncpool {
namespace internal {
namespace {

size_t Sum(const std::vector<uint32_t>& capacities) {
  size_t sum = 0;
  for (uint32_t c : capacities) sum += c;
  return sum;
}

// Columns of the region: CPU ids, or thread slots (never fewer than CPU ids: a failing
// sequence still reads the column of its CPU).
int Columns(const CacheModeChoice& mode) {
  return mode.per_thread ? std::max(static_cast<int>(kThreadSlots), NumCpus()) : NumCpus();
}

// The region's bytes (MappedRegion rounds them up to whole pages).
size_t RegionBytes(size_t num_classes, int num_cpus) {
  return num_classes * (static_cast<size_t>(num_cpus) << kClassStackShift);
}

// The most each class may grow to: `max` where given (never below the start), else the start.
std::vector<uint32_t> MaxCapacities(const std::vector<uint32_t>& start,
                                    const std::vector<uint32_t>& max) {
  std::vector<uint32_t> result = start;
  for (size_t c = 0; c < result.size() && c < max.size(); ++c) {
    result[c] = std::max(result[c], max[c]);
  }
  return result;
}

// The number of classes, after checking that there is at least one and a capacity for each.
size_t ValidatedClassCount(const std::vector<size_t>& class_bytes,
                           const std::vector<uint32_t>& capacities) {
  if (class_bytes.empty() || class_bytes.size() != capacities.size()) {
    throw std::invalid_argument("syncpool: a cache needs one capacity per size class");
  }
  return class_bytes.size();
}

// Serializes every cache's joining of its sweeper (the first Register(), in CacheOf()). One
// lock for the process, so that the fork handlers can hold it (fork.h, rank kRegistrations):
// a cache that has not joined is in no sweeper's list. Taken before a sweeper's `mu`, never
// after it; a cache joins once, so the lock is rarely taken.
constinit std::mutex g_registrations_mu;

// The registrations' fork layer: locked before a fork, released after it in both processes.
void LockRegistrationsForFork() { g_registrations_mu.lock(); }
void UnlockRegistrationsAfterFork(bool /*child*/) { g_registrations_mu.unlock(); }
ForkLayer registrations_fork(ForkRank::kRegistrations, &LockRegistrationsForFork,
                             &UnlockRegistrationsAfterFork);

}  // namespace

BlockCache::BlockCache(std::vector<size_t> class_bytes, std::vector<uint32_t> capacities,
                       BlockReleaser* releaser, SweepRegistry* sweeper, bool allow_rseq,
                       Policy policy)
    : mode_(ChooseCacheMode(allow_rseq, policy.mode)),
      mapping_(RegionBytes(ValidatedClassCount(class_bytes, capacities), Columns(mode_))),
      region_(mapping_.base()),
      class_stride_(static_cast<size_t>(Columns(mode_)) << kClassStackShift),
      num_cpus_(Columns(mode_)),
      cpus_(new std::atomic<CpuCache*>[static_cast<size_t>(num_cpus_)]),
      class_bytes_(std::move(class_bytes)),
      capacities_(std::move(capacities)),
      max_capacities_(MaxCapacities(capacities_, policy.max_capacities)),
      total_capacity_(Sum(capacities_)),
      releaser_(releaser),
      sweeper_(sweeper),
      transfers_(std::make_unique<TransferStack[]>(capacities_.size())),
      policy_(policy) {
  internal::InitRseqArea();
  for (size_t cls = 0; cls < capacities_.size(); ++cls) {
    transfers_[cls].Init(cls < policy_.direct_release_classes
                             ? 0
                             : 2 * std::max<uint32_t>(capacities_[cls], 1));
  }
  for (int cpu = 0; cpu < num_cpus_; ++cpu) cpus_[cpu].store(nullptr, std::memory_order_relaxed);
  if (policy_.owned_bytes) {
    if (class_bytes_.size() != 1) {
      throw std::invalid_argument("BlockCache: owned bytes are counted for one class only");
    }
    owned_region_ = std::make_unique<MappedRegion>(kThreadSlots * sizeof(OwnedCount));
    owned_ = reinterpret_cast<OwnedCount*>(owned_region_->base());
    // Small enough that the budget check of a Put sees the others' counts within 1/64 of the
    // budget (64 KiB per thread at most).
    constexpr int64_t kMaxFlush = 64 * 1024;
    owned_flush_ = policy_.max_cached_bytes == 0
                       ? kMaxFlush
                       : std::clamp<int64_t>(
                             static_cast<int64_t>(policy_.max_cached_bytes / 64), 1, kMaxFlush);
  }
  local_ = LocalCache(this, region_, class_stride_, mode_.rseq, mode_.per_thread, class_bytes_.data(), owned_,
                      owned_flush_);
  if (mode_.per_thread) RegisterSlotUser(this);
}

namespace {

// A region of stacks that never open, shared by the ClosedLocal() of every pool and resource of
// the process (address space: its pages are touched only by the per-thread owner's busy flags)
// and never unmapped, so that a checked pool's inline paths read mapped memory even after it
// is destroyed. nullptr for a cache larger than any pool or resource makes (tests).
char* SharedClosedRegion(size_t bytes) {
  static const size_t kBytes =
      RegionBytes(kNumSizeClasses, std::max(static_cast<int>(kThreadSlots), NumCpus()));
  if (bytes > kBytes) return nullptr;
  static MappedRegion* const region = new MappedRegion(kBytes);  // May throw: tried again.
  return region->base();
}

}  // namespace

LocalCache BlockCache::ClosedLocal() {
  const size_t bytes = RegionBytes(class_bytes_.size(), num_cpus_);
  char* base = SharedClosedRegion(bytes);
  if (base == nullptr) {
    if (closed_mapping_ == nullptr) closed_mapping_ = std::make_unique<MappedRegion>(bytes);
    base = closed_mapping_->base();
  }
  return LocalCache(this, base, class_stride_, mode_.rseq, mode_.per_thread,
                    class_bytes_.data(), owned_, owned_flush_);
}

BlockCache::~BlockCache() {
  // First, so that no thread exit visits the cache from here on.
  if (mode_.per_thread) UnregisterSlotUser(this);
  // After Unregister() returns no sweep touches this cache, and REQUIRES says no other thread
  // does either, so the caches can be drained and freed.
  if (registered_flag_.load(std::memory_order_acquire)) sweeper_->Unregister(this);
  Drain();
  SetEstimate(0);
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    if (CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) CpuCache::Destroy(c);
  }
}

uint64_t BlockCache::Release(size_t cls, void* const* blocks, size_t n) {
  if (n == 0) return 0;
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  for (size_t i = 0; i < n; ++i) UnpoisonCached(blocks[i], class_bytes_[cls]);
#endif
  uint64_t bytes = n * class_bytes_[cls];
  if (owned_ != nullptr) {
    bytes = 0;
    for (size_t i = 0; i < n; ++i) bytes += releaser_->OwnedBytes(cls, blocks[i]);
    AccountOwned(-static_cast<int64_t>(bytes));
  }
  releaser_->Release(cls, blocks, n);
  return bytes;
}

uint64_t BlockCache::ReleasePaced(TakeBuffer& buffer, size_t cls, void* const* blocks, size_t n) {
  if (buffer.pacer == nullptr) return Release(cls, blocks, n);
  uint64_t bytes = 0;
  for (size_t at = 0; at < n; at += kReleaseChunk) {
    bytes += Release(cls, blocks + at, std::min(kReleaseChunk, n - at));
    buffer.pacer->Pause();
  }
  return bytes;
}

// Locks taken here and released in UnlockAfterFork(): beyond what the analysis follows.
void BlockCache::LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  releaser_->LockForFork();
  create_mu_.lock();
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    if (CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) c->lock.Lock();
  }
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) transfers_[cls].LockForFork();
}

// Releases what LockForFork() took (see there).
void BlockCache::UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (size_t cls = class_bytes_.size(); cls-- > 0;) transfers_[cls].UnlockAfterFork();
  for (int cpu = num_cpus_; cpu-- > 0;) {
    if (CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) c->lock.Unlock();
  }
  create_mu_.unlock();
  releaser_->UnlockAfterFork();
}

void BlockCache::AfterFork() {
  const uint64_t generation = g_fork_generation.load(std::memory_order_relaxed);
  if (fork_generation_.exchange(generation, std::memory_order_relaxed) == generation) return;
  if (registered_flag_.load(std::memory_order_acquire)) sweeper_->RestartAfterFork();
}

CpuCache* BlockCache::CacheOf(int cpu) {
  if (ABSL_PREDICT_FALSE(fork_generation_.load(std::memory_order_relaxed) !=
                         g_fork_generation.load(std::memory_order_relaxed))) {
    AfterFork();
  }
  if (static_cast<unsigned>(cpu) >= static_cast<unsigned>(num_cpus_)) cpu %= num_cpus_;
  CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
  if (c != nullptr) return c;
  // First use of this CPU's cache. Join the sweeper (once per BlockCache) so the thread starts
  // only when a cache is actually used.
  // Not std::call_once: when Register() throws (std::bad_alloc), the next caller must try
  // again, and call_once does not allow that everywhere (with ThreadSanitizer's pthread_once
  // the next caller waited forever).
  if (ABSL_PREDICT_FALSE(!registered_flag_.load(std::memory_order_acquire))) {
    std::lock_guard<std::mutex> l(g_registrations_mu);
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_registering_for_test != nullptr) g_registering_for_test();
#endif
    if (!registered_flag_.load(std::memory_order_relaxed)) {
      sweeper_->Register(this);  // May throw: nothing registered, the flag stays clear.
      registered_flag_.store(true, std::memory_order_release);
    }
  }
  // Racing creators: the first to take create_mu_ builds the cache in the region and
  // publishes it (release); the others find it there.
  std::lock_guard<std::mutex> l(create_mu_);
  c = cpus_[cpu].load(std::memory_order_relaxed);
  if (c != nullptr) return c;
  c = CpuCache::Create(region_ + (static_cast<size_t>(cpu) << kClassStackShift), class_stride_,
                       class_bytes_.data(), capacities_.data(), max_capacities_.data(),
                       capacities_.size(), mode_.per_thread);
  if (mode_.rseq || mode_.per_thread) {
    // Open it to the inline operations under its lock, so that it cannot open in the middle
    // of a remote operation that found the cache in cpus_ already.
    SpinLockHolder cl(&c->lock);
    c->OpenToSequences();
  }
  cpus_[cpu].store(c, std::memory_order_release);
  return c;
}

#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
void (*g_registering_for_test)() = nullptr;
void (*g_remote_after_fence_for_test)(int cpu) = nullptr;
void (*g_remote_waiting_for_test)(int cpu) = nullptr;
void (*g_remote_before_op_for_test)(int cpu) = nullptr;
#endif

void BlockCache::FlushSlot(uint32_t slot) {
  if (slot >= static_cast<uint32_t>(num_cpus_)) return;
  CpuCache* c = cpus_[slot].load(std::memory_order_acquire);
  if (c == nullptr || c->LooksEmpty()) return;
  c->changes.fetch_add(1, std::memory_order_relaxed);  // Counts go down without hits.
  // The exiting thread owns the column, so its inline operations are not running: the lock
  // keeps remote operations out. Batches go to the TransferStack (what it cannot hold is
  // released), with the lock dropped.
  void* blocks[256];
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    for (;;) {
      size_t n;
      {
        SpinLockHolder l(&c->lock);
        n = c->TakeAll(cls, blocks, std::size(blocks));
      }
      if (n == 0) break;
      ToTransfer(cls, c, blocks, n);
    }
  }
  // Blocks that left the column for a TransferStack: a park may have looked at the stack
  // before they arrived and at the column after they left (Park()), so read `parked_` now.
  sweeper_->WakeIfParked();
}

void BlockCache::ResetBusyAfterFork() {
  for (int slot = 0; slot < num_cpus_; ++slot) {
    if (CpuCache* c = cpus_[slot].load(std::memory_order_acquire)) c->ClearBusy();
  }
}

bool BlockCache::Park() {
  // A racy look first: most caches that hold something say so without a fence.
  for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
    if (!transfers_[cls].LooksEmpty()) return false;
  }
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    const CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c != nullptr && !c->LooksEmpty()) return false;
  }
  if (!mode_.rseq) {
    // The TransferStacks again, each under its lock. A Put that leaves a block there with no
    // column holding anything (the per-thread mode's thread without a slot, and the locked
    // mode) reads `parked_` once the block is in (PutSlow()), so it either finished under the
    // lock before this look took it (and is seen), or took it after (and then reads
    // `parked_`, set before this look, and wakes the sweeper).
    for (size_t cls = 0; cls < class_bytes_.size(); ++cls) {
      if (!transfers_[cls].Empty()) return false;
    }
  }
  if (!mode_.rseq && !mode_.per_thread) {
    // The locked mode: each cache again under its lock, by the same argument (its Puts read
    // `parked_` after the push and any move to the TransferStack).
    for (int cpu = 0; cpu < num_cpus_; ++cpu) {
      CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
      if (c == nullptr) continue;
      SpinLockHolder l(&c->lock);
      if (!c->LooksEmpty()) return false;
    }
    return true;
  }
  // Close every column for good, as a remote operation (so that no inline operation that read
  // it open is still running), and look again: what an operation left before the close is
  // seen; an operation after it takes the slow path, which reopens the column and wakes the
  // sweeper (sweeper.cc). A column that holds something is reopened and the park fails.
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    CpuCache* c = cpus_[cpu].load(std::memory_order_acquire);
    if (c == nullptr) continue;  // Never opened.
    const bool empty = Remote(
        cpu, c,
        [](CpuCache* cc) {
          cc->lock.AssertHeld();  // Remote() holds it.
          return cc->LooksEmpty();
        },
        /*reopen=*/false);
    if (!empty) {
      WaitAndOpenSlow(c);
      return false;
    }
  }
  return true;
}

void BlockCache::WaitAndOpenSlow(CpuCache* c) {
  // Holding the lock means no remote operation is under way on `c` (they hold it from closing
  // to reopening), so the cache may be opened: this ends the wait for a remote operation.
  SpinLockHolder l(&c->lock);
  c->OpenToSequences();
}

}  // namespace internal
}  // namespace syncpool
