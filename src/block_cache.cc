// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The caching policy's slow paths: creating a CPU's cache, the victim generation, stealing,
// spilling, and the sweeper's epoch. See block_cache.h for the policy and cpu_cache.h for the
// locking protocol these functions follow.

#include "syncpool/internal/block_cache.h"

#include <algorithm>
#include <iterator>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "syncpool/internal/env.h"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

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

size_t RegionBytes(size_t num_classes, int num_cpus) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes = num_classes * (static_cast<size_t>(num_cpus) << kClassStackShift);
  return (bytes + page - 1) / page * page;
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

char* Map(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<char*>(p);
}

// Why the sequences cannot be used in this process (RseqUsable() is false).
const char* WhyNoRseq() {
#if !SYNCPOOL_RSEQ_FAST_PATH
#if defined(ABSL_HAVE_THREAD_SANITIZER)
  return "ThreadSanitizer";
#else
  return "not x86-64 Linux with glibc";
#endif
#else
  if (!RseqAvailable()) return "glibc did not register rseq";
  if (!EnvBool("SYNCPOOL_RSEQ", true)) return "SYNCPOOL_RSEQ=0";
  return "membarrier for rseq refused";
#endif
}

constexpr const char* kRseqName = "rseq per-CPU";
constexpr const char* kPerThreadName = "per-thread";
constexpr const char* kLockedName = "locked per-CPU";

}  // namespace

CacheModeChoice ChooseCacheMode(bool allow_rseq, CacheMode requested) {
  if (!allow_rseq) {
    return {false, false, kLockedName, "Options::allow_rseq is false, or debug checks are on"};
  }
  if (requested == CacheMode::kAuto) requested = GetOptionDefaults().mode;  // SYNCPOOL_MODE.
  const char* no_fence = "";
  if (requested == CacheMode::kPerThread) {
    if (ThreadFenceUsable(&no_fence)) {
      return {false, true, kPerThreadName, "asked for (Options::mode or SYNCPOOL_MODE)"};
    }
    return {false, false, kLockedName, no_fence};
  }
  if (RseqUsable()) return {true, false, kRseqName, "glibc registered rseq"};
  if (requested == CacheMode::kPerCpu) return {false, false, kLockedName, WhyNoRseq()};
  if (ThreadFenceUsable(&no_fence)) return {false, true, kPerThreadName, WhyNoRseq()};
  return {false, false, kLockedName, no_fence};
}

MappedRegion::MappedRegion(size_t bytes) : bytes_(bytes), base_(Map(bytes)) {}

MappedRegion::~MappedRegion() { munmap(base_, bytes_); }

BlockCache::BlockCache(std::vector<size_t> class_bytes, std::vector<uint32_t> capacities,
                       BlockReleaser* releaser, Sweeper* sweeper, bool allow_rseq,
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
    transfers_[cls].Init(2 * std::max<uint32_t>(capacities_[cls], 1));
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
  if (mode_.per_thread) RegisterSlotUser(this);
}

void BlockCache::AccountOwnedSlow(int64_t bytes) {
  if (AcquireThreadSlot() != 0) {
    AccountOwned(bytes);
  } else {
    AddEstimate(bytes);
  }
}

void BlockCache::RefreshEstimate() {
  if (owned_ == nullptr) SetEstimate(CachedBytes());
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
  std::call_once(registered_, [this] {
    sweeper_->Register(this);
    registered_flag_.store(true, std::memory_order_release);
  });
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
void (*g_remote_after_fence_for_test)(int cpu) = nullptr;
void (*g_remote_waiting_for_test)(int cpu) = nullptr;
void (*g_remote_before_op_for_test)(int cpu) = nullptr;
#endif

template <typename Op>
auto BlockCache::Remote(int cpu, CpuCache* c, Op op, bool reopen) {
  SpinLockHolder l(&c->lock);
  if (mode_.rseq) {
    // Close, then fence: once FenceCpu() returns, no sequence that read an open capacity
    // before the close is still running on `cpu`, so the cache is ours until it is reopened.
    c->CloseToSequences();
    FenceCpu(cpu);
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_remote_after_fence_for_test != nullptr) g_remote_after_fence_for_test(cpu);
#endif
  }
  if (mode_.per_thread) {
    // Close, fence, then wait for an owner that read the column open before the close to
    // leave its operation (thread_slots.h): the column is then ours until it is reopened.
    c->CloseToSequences();
    FenceAllThreads();
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_remote_after_fence_for_test != nullptr) g_remote_after_fence_for_test(cpu);
#endif
    for (int spins = 0; c->AnyBusy(); ++spins) {
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
      if (g_remote_waiting_for_test != nullptr) g_remote_waiting_for_test(cpu);
#endif
      if (spins >= 64) sched_yield();  // The owner was preempted inside: let it run.
    }
#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
    if (g_remote_before_op_for_test != nullptr) g_remote_before_op_for_test(cpu);
#endif
  }
  auto result = op(c);  // Moves pointers only: cannot throw.
  if (reopen && (mode_.rseq || mode_.per_thread)) c->OpenToSequences();
  return result;
}

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
  // The locked mode's operations all take the slow path already.
  if (!mode_.rseq && !mode_.per_thread) return true;
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

namespace {

// The fake CPU of the calling thread (tests), or -1.
int FakeCpu() {
  return g_fake_cpu_users.load(std::memory_order_relaxed) != 0 ? FakeCpuOfThisThread() : -1;
}

// In the rseq mode: the CPU whose cache the calling thread must work on as a remote
// operation, or -1 when it can use the sequences on its own CPU. That is its fake CPU in a
// test; or, when the sequences would refuse this thread (a CPU id at or beyond
// g_rseq_cpu_limit, which is 0 while a test fakes CPU ids, or an rseq area the kernel did not
// register for it), the entry its CPU id wraps to.
int RemoteTarget(int num_cpus) {
  if (const int fake = FakeCpu(); fake >= 0) return fake;
#if SYNCPOOL_RSEQ_FAST_PATH
  if (static_cast<uint32_t>(RseqCpuId()) < g_rseq_cpu_limit.load(std::memory_order_relaxed)) {
    return -1;
  }
#endif
  return RealCurrentCpu() % num_cpus;
}

}  // namespace

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
  if (mode_.per_thread) {
    // The owner's slow path: under the lock, which keeps remote operations out (its own
    // inline operations are not running: this is the same thread).
    if (const uint32_t slot = AcquireThreadSlot(); slot != 0) {
      c = CacheOf(static_cast<int>(slot));
      SpinLockHolder l(&c->lock);
      ReopenForOwner(c);
      block = pop_locked(c);
    }
  } else if (!mode_.rseq) {
    c = CacheOf(CurrentCpu());
    SpinLockHolder l(&c->lock);
    block = pop_locked(c);
  } else if (const int target = RemoteTarget(num_cpus_); target >= 0) {
    // Not the CPU this thread runs on: work on its cache as a remote operation.
    c = CacheOf(target);
    block = Remote(target, c, pop_locked);
  } else {
#if SYNCPOOL_RSEQ_FAST_PATH
    // The common miss first, read from this CPU's stack in the class's row (where the
    // sequences look) without going through its CpuCache: open, both generations empty, and
    // the TransferStack too. The reads are hints (the thread may move, blocks may come); the
    // sequence that counts the miss is the authority on where it is counted.
    // (Read again, the CPU id may be one the region has no row for: then no shortcut.)
    if (const unsigned cpu = static_cast<unsigned>(RseqCpuId());
        cpu < static_cast<unsigned>(num_cpus_)) {
      const ClassStack& s =
          *reinterpret_cast<const ClassStack*>(Row(cls) + (size_t{cpu} << kClassStackShift));
      if (s.open_capacity.load(std::memory_order_relaxed) != 0 &&
          s.primary_count.load(std::memory_order_relaxed) == 0 &&
          s.victim_count.load(std::memory_order_relaxed) == 0 && transfers_[cls].LooksEmpty() &&
          RseqCountMiss(Row(cls))) {
        return nullptr;
      }
    }
    c = CacheOf(RealCurrentCpu());
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
  for (size_t k = 1; k < n; ++k) Put(cls, taken[k]);
  return taken[0];
}

void BlockCache::ToTransfer(size_t cls, CpuCache* c, void* const* blocks, size_t n) {
  // Owned bytes are counted already, wherever the blocks are.
  if (OverBudget(owned_ != nullptr ? 0 : n * class_bytes_[cls])) {
    CountOverBudget(n, Release(cls, blocks, n));
    return;
  }
  const size_t stored = transfers_[cls].Insert(blocks, n);
  if (owned_ == nullptr) AddEstimate(static_cast<int64_t>(stored * class_bytes_[cls]));
  shared_moves_.fetch_add(stored, std::memory_order_relaxed);
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

bool BlockCache::TryGrow(CpuCache* c, size_t cls) {
  if (!GrowthAllowed(c, cls, c->Capacity(cls))) return false;
  SpinLockHolder l(&c->lock);
  // Again under the lock: another thread on this CPU may have grown a class since the hint.
  return GrowthAllowed(c, cls, c->Capacity(cls)) && c->Grow(cls);
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
    if (GrowthAllowed(cc, cls, cc->Capacity(cls)) && cc->Grow(cls)) {
      return cc->PushPrimary(cls, block);
    }
    while (n_moved < batch) {
      void* b = cc->PopPrimary(cls, /*to_move=*/true);
      if (b == nullptr) break;
      moved[n_moved++] = b;
    }
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
        return;
      }
    } else if (!mode_.rseq) {
      c = CacheOf(CurrentCpu());
      SpinLockHolder l(&c->lock);
      kept = push_locked(c);
    } else if (const int target = RemoteTarget(num_cpus_); target >= 0) {
      c = CacheOf(target);
      kept = Remote(target, c, push_locked);
    } else {
#if SYNCPOOL_RSEQ_FAST_PATH
      // A sequence also fails when a remote operation closed the cache or the thread moved to
      // a CPU without a cache: retry a few times. When the stack reads full, grow the CPU's
      // capacity and retry; at its maximum, make room once by moving a batch out (each pop
      // its own sequence, on whatever CPU the thread is then on: all local operations), then
      // retry; a second full stack means a spill.
      char* const row = Row(cls);
      for (int attempt = 0; attempt < 4 && !kept; ++attempt) {
        const int cpu = RealCurrentCpu();
        c = CacheOf(cpu);
        WaitAndOpen(c, cls);
        kept = RseqPush(row, block);
        if (kept || c->PrimaryCount(cls) < c->Capacity(cls)) continue;
        c->NoteOverflow(cls);
        if (TryGrow(c, cls)) continue;
        if (n_moved != 0) break;
        while (n_moved < batch) {
          void* b = RseqPopToMove(row);
          if (b == nullptr) break;
          moved[n_moved++] = b;
        }
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
  if (kept) return;
  // Spill: the block found no room. Release it now, outside any lock.
  (c != nullptr ? c->spills : orphan_spills_).fetch_add(1, std::memory_order_relaxed);
  Release(cls, &block, 1);
}

template <typename Take>
void BlockCache::TakeAndRelease(int cpu, CpuCache* c, Take take, TakeBuffer& buffer) {
  c->changes.fetch_add(1, std::memory_order_relaxed);  // Counts go down without hits.
  const size_t room = buffer.blocks.size();
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
      buffer.released_bytes += Release(cls, buffer.blocks.data() + at, buffer.counts[cls]);
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
    *bytes += Release(cls, buffer.blocks.data(), n);
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
          for (size_t cls = 0; cls < detached_.size(); ++cls) {
            bytes += Release(cls, detached_[cls].slots, detached_[cls].count);
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
      bytes += Release(cls, slots, n);
      transfers_[cls].ReturnSpare(slots);
      blocks += n;
    }
    swept_blocks_.fetch_add(blocks, std::memory_order_relaxed);
    swept_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  RefreshEstimate();
  EnforceBudget(buffer);
  // What this epoch left, every path included (aging, draining, pressure, budgets), for the
  // next epoch to tell a CPU nobody used since.
  for (int cpu = 0; cpu < num_cpus_; ++cpu) {
    if (CpuCache* c = cpus_[cpu].load(std::memory_order_acquire)) {
      c->activity_at_last_epoch = c->Activity();
    }
  }
  epochs_.fetch_add(1, std::memory_order_relaxed);
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
    const size_t room = buffer.blocks.size();
    size_t n;
    do {
      n = transfers_[0].TakeIf(take, buffer.blocks.data(), room);
      bytes += Release(0, buffer.blocks.data(), n);
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
        bytes += Release(0, buffer.blocks.data(), n);
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
}

Stats BlockCache::Snapshot() const {
  Stats s;
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
    }
    ++s.caches;
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

BlockCache::Policy PolicyOf(const Options& options, const std::vector<size_t>& class_bytes,
                            const char* who) {
  BlockCache::Policy policy;
  policy.mode = options.mode;
  policy.retention = options.retention;
  policy.max_cached_bytes = options.max_cached_bytes;
  policy.max_capacities = SizingOf(options, class_bytes, who).max;
  policy.max_cpu_bytes = options.per_cpu_bytes;
  return policy;
}

void FitToBudget(const std::vector<size_t>& class_bytes, size_t budget,
                 std::vector<uint32_t>& capacities) {
  if (budget == 0) return;
  // Full, a class of capacity k holds 2k blocks per CPU and 4k in its TransferStack.
  const double per_block_set = 2.0 * NumCpus() + 4.0;
  double full = 0;
  for (size_t c = 0; c < capacities.size(); ++c) {
    full += per_block_set * capacities[c] * static_cast<double>(class_bytes[c]);
  }
  if (full <= static_cast<double>(budget)) return;
  const double scale = static_cast<double>(budget) / full;
  for (uint32_t& k : capacities) {
    k = std::max<uint32_t>(1, static_cast<uint32_t>(k * scale));
  }
}

CacheSizing SizingOf(const Options& options, const std::vector<size_t>& class_bytes,
                     const char* who) {
  if (options.max_blocks_per_class == 0) {
    throw std::invalid_argument(std::string(who) + ": Options::max_blocks_per_class must be >= 1");
  }
  if (options.initial_blocks_per_class == 0) {
    throw std::invalid_argument(std::string(who) +
                                ": Options::initial_blocks_per_class must be >= 1");
  }
  CacheSizing sizing;
  sizing.max.resize(class_bytes.size());
  sizing.start.resize(class_bytes.size());
  for (size_t c = 0; c < class_bytes.size(); ++c) {
    const size_t by_bytes = std::max<size_t>(2, options.per_cpu_class_bytes / class_bytes[c]);
    sizing.max[c] = static_cast<uint32_t>(
        std::min<size_t>(options.max_blocks_per_class, by_bytes));
  }
  FitToBudget(class_bytes, options.max_cached_bytes, sizing.max);
  for (size_t c = 0; c < class_bytes.size(); ++c) {
    const size_t by_bytes = std::max<size_t>(2, kStartClassBytes / class_bytes[c]);
    sizing.start[c] = static_cast<uint32_t>(std::min<size_t>(
        {options.initial_blocks_per_class, by_bytes, size_t{sizing.max[c]}}));
  }
  return sizing;
}

}  // namespace internal
}  // namespace syncpool
