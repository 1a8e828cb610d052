// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/pool_resource.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::PoolResource`, a `std::pmr::memory_resource` that serves
// allocations from per-CPU caches of freed blocks, in size classes, over an upstream resource,
// and gives cached memory back when the sweeper finds it unused (see sweeper.h).
//
//   syncpool::PoolResource pool;                  // upstream: syncpool::DefaultUpstream()
//   std::pmr::vector<std::pmr::string> v(&pool);
//
// Requests of up to Options::max_block_size bytes with an alignment of up to
// kMaxPooledAlignment (64) are rounded up to a size class; a freed block goes to the cache of
// the CPU that frees it, and any thread on any CPU may reuse it. Larger or more aligned
// requests go straight to the upstream resource and come back to it on deallocate.
//
// Blocks of up to 4 KiB live in spans of 64 KiB or more that the resource takes from the
// upstream resource: behind small per-CPU caches (64 KiB of each class per CPU), blocks are
// handed out lowest address first, from spans of the CPU's own, so that a large structure
// built after another was freed gets its blocks in order again. A span goes back upstream
// once all of its blocks are free (docs/design.md, "Spans"). Larger blocks are taken from
// upstream one by one, and the resource records each while it holds it.
//
// Errors:
//   - allocate(0) returns a valid, distinct, deallocatable block (of the smallest class).
//   - An alignment that is not a power of two throws std::invalid_argument.
//   - std::bad_alloc (or any exception) from the upstream resource propagates; the resource is
//     left as it was, holding nothing from the failed call. So does std::bad_alloc from the
//     resource's own bookkeeping (its first cache, the records of larger blocks, the debug
//     registry): the next call works when memory allows (tests/allocation_failure_test.cc).
//   - With debug checks on (Options::debug_checks), a deallocate whose size or alignment
//     differs from the allocation's, or of a pointer this resource did not hand out (including
//     a second deallocate of the same block), aborts with a message naming the pool and the
//     mistake, and a stack. Without them such misuse is undefined behaviour, as for any
//     memory_resource, though much of it is still caught late: when the block leaves the
//     caches for its span or upstream, a block the resource did not hand out with that size,
//     or one already free, aborts with a message.
//
// Thread safety: all members are thread-safe.
//
// Memory ordering: a deallocate of a block happens before the allocate that hands the same
// block out again, on whatever thread.
//
// Lifetime: destroying the resource (or release()) returns upstream everything it took from
// it, including the blocks still allocated from it, as the std::pmr pools do. With debug
// checks on, a destruction with blocks still allocated prints one line on stderr (the pool,
// how many blocks, how many bytes). No block allocated from the resource may be used or
// deallocated after its destruction. The upstream resource must outlive it.

#ifndef SYNCPOOL_POOL_RESOURCE_H_
#define SYNCPOOL_POOL_RESOURCE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>

#include "absl/base/optimization.h"
#include "syncpool/internal/local_cache.h"
#include "syncpool/internal/size_class.h"
#include "syncpool/options.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

// SYNCPOOL_SANITIZER: defined where the code is compiled with AddressSanitizer or
// ThreadSanitizer, which must see every allocation: DefaultUpstream() is then new/delete, not
// mimalloc (a library loaded aside, whose blocks they would not see). Detected here, so that a
// sanitized build of any project that compiles syncpool gets it without a flag of its own.
#if !defined(SYNCPOOL_SANITIZER)
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SYNCPOOL_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SYNCPOOL_SANITIZER 1
#endif
#endif
#endif

namespace syncpool {

// The largest alignment served from the size classes; larger alignments go upstream.
inline constexpr size_t kMaxPooledAlignment = internal::kMaxPooledAlignment;

namespace internal {
class DebugRegistry;
class LargeBlocks;
class Spans;
class StatsReportEntry;
class SweepPacer;
class UpstreamMeter;

// Whether `alignment` is 1, 2, 4, 8 or 16: the alignments every size class has already.
constexpr bool IsSmallAlignment(size_t alignment) {
  return alignment <= 16 && ((uint32_t{0x10116} >> alignment) & 1) != 0;
}

}  // namespace internal

// DefaultUpstream()
//
// The upstream resource PoolResource uses unless told otherwise: MimallocResource::Get() when
// mimalloc can be loaded, std::pmr::new_delete_resource() otherwise, and under the sanitizers
// (SYNCPOOL_SANITIZER) and valgrind.
std::pmr::memory_resource* DefaultUpstream();

class PoolResource final : public std::pmr::memory_resource {
 public:
  // Throws std::invalid_argument for invalid options. `upstream` must not be null.
  explicit PoolResource(Options options = {},
                        std::pmr::memory_resource* upstream = DefaultUpstream());
  explicit PoolResource(std::pmr::memory_resource* upstream) : PoolResource(Options{}, upstream) {}
  PoolResource(const PoolResource&) = delete;
  PoolResource& operator=(const PoolResource&) = delete;
  ~PoolResource() override;

  // PoolResource::Default()
  //
  // The process-wide resource with default options over DefaultUpstream(). Never destroyed,
  // so it stays usable from static destructors.
  static PoolResource& Default();

  // PoolResource::Allocate()
  //
  // allocate() without the virtual call: PoolAllocator uses it. Same contract.
  template <internal::RseqOffsets kOffsets = internal::RseqOffsets::kInRegisters>
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Allocate(size_t bytes,
                                              size_t alignment = alignof(std::max_align_t)) {
    if (ABSL_PREDICT_TRUE(IsInlineRequest(bytes, alignment))) {
      const size_t index = internal::SmallSizeIndex(bytes);
      // The sequence failed: straight to the class's slow path (another try at the same
      // sequence would fail again but for a preemption). The class is looked up there only,
      // not on the hit path.
      return local_.GetOr<kOffsets>(internal::kSmallSizeClasses[index], small_rows_[index],
                          [this, index, bytes, alignment] {
                            return AllocateClass(internal::kSmallSizeClasses[index], bytes,
                                                 alignment);
                          });
    }
    return AllocateSlow(bytes, alignment);  // A tail call: the fast path saves no registers.
  }

  // PoolResource::Deallocate()
  //
  // deallocate() without the virtual call. REQUIRES: `bytes` and `alignment` are those the
  // block was allocated with.
  template <internal::RseqOffsets kOffsets = internal::RseqOffsets::kInRegisters>
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Deallocate(void* p, size_t bytes,
                                               size_t alignment = alignof(std::max_align_t)) {
    if (ABSL_PREDICT_TRUE(IsInlineRequest(bytes, alignment))) {
      const size_t index = internal::SmallSizeIndex(bytes);
      if (ABSL_PREDICT_TRUE(
              local_.TryPutAt<kOffsets>(internal::kSmallSizeClasses[index], small_rows_[index],
                                        p))) {
        return;
      }
    }
    DeallocateSlow(p, bytes, alignment);
  }

  // PoolResource::Trim()
  //
  // Returns every cached block upstream now (blocks in use are unaffected).
  void Trim();

  // PoolResource::release()
  //
  // std::pmr's release(): gives back upstream everything the resource took from it, the
  // blocks still allocated from it included, which become invalid. The resource stays usable.
  // REQUIRES: no other thread uses the resource during the call, and no block it handed out
  // before is deallocated after it (with debug checks on, such a deallocate aborts).
  void release();

  // PoolResource::GetStats()
  Stats GetStats() const;

  // PoolResource::upstream()
  std::pmr::memory_resource* upstream() const { return upstream_; }

  // PoolResource::uses_rseq()
  //
  // Whether the per-CPU caches run as restartable sequences (GetStats().mode names the mode).
  bool uses_rseq() const { return local_.uses_rseq(); }

  // PoolResource::max_block_size()
  size_t max_block_size() const { return max_block_size_; }

 private:
  // The virtual entry points run one sequence each before a tail call that needs every
  // argument: their sequences load the rseq area's offset inside (internal::RseqOffsets).
  void* do_allocate(size_t bytes, size_t alignment) override {
    return Allocate<internal::RseqOffsets::kAreaInSequence>(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    Deallocate<internal::RseqOffsets::kAreaInSequence>(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  // What the constructor derives from the options, once (src/pool_resource.cc); the public
  // constructor validates the options, makes it and delegates here.
  struct Plan;
  PoolResource(const Options& options, std::pmr::memory_resource* upstream, Plan plan);

  // True for a request the inline paths serve: at most inline_limit_ bytes, alignment a power
  // of two up to 16, so that the class is one table lookup without rounding. Debug checks need
  // no test here: with them on, inline_limit_ is 0 and local_ is a copy of the cache's stacks
  // that never open, which sends every call to AllocateSlow() and DeallocateSlow(), where they
  // live.
  bool IsInlineRequest(size_t bytes, size_t alignment) const {
    return bytes <= inline_limit_ && internal::IsSmallAlignment(alignment);
  }
  // The rest of allocate() and deallocate(), out of line, each decision taken once: a request
  // inside the classes gets its class, then the cache's sequence for it (the classes the
  // inline paths above do not serve: larger blocks, alignments 32 and 64) or, where that
  // failed or cannot run, AllocateClass() and DeallocateClass(); one outside them goes to
  // AllocateUnpooled() and DeallocateUnpooled().
  void* AllocateSlow(size_t bytes, size_t alignment);
  void DeallocateSlow(void* p, size_t bytes, size_t alignment);
  // A request outside the classes: an invalid alignment (an exception), else a block of its
  // own from upstream.
  void* AllocateUnpooled(size_t bytes, size_t alignment);
  // A request of class `cls` (`bytes`, `alignment` valid and pooled) whose inline sequence
  // failed: the cache's slow path (other generations, the TransferStack, other CPUs, the
  // locked mode), else a miss served upstream; then the debug checks.
  void* AllocateClass(size_t cls, size_t bytes, size_t alignment);
  // A miss of class `cls`: refill_blocks_[cls] blocks from upstream; returns the first and
  // caches the others (Options::refill_bytes). Throws only when the first cannot be had.
  void* Refill(size_t cls);
  // The end of a refill: caches blocks[1..n) of class `cls` as one batch, so that the next
  // allocations pop them in that order, and returns blocks[0]. REQUIRES: 1 <= n <= kMaxRefill.
  void* Cache(size_t cls, void* const* blocks, size_t n);
  // The debug checks, then the cache's slow path (DeallocateClass()), or the record of blocks
  // outside the classes (DeallocateUnpooled(), which aborts on an invalid alignment).
  void DeallocateClass(void* p, size_t cls, size_t bytes, size_t alignment);
  void DeallocateUnpooled(void* p, size_t bytes, size_t alignment);
  // The debug checks of a deallocate: a resource already destroyed, a block not handed out
  // with these `bytes` and `alignment` (aborts). REQUIRES: debug_.
  void CheckDeallocate(void* p, size_t bytes, size_t alignment);
  // Whether the classes serve a request of `bytes` with `alignment`.
  bool IsPooledRequest(size_t bytes, size_t alignment) const {
    return bytes <= max_block_size_ && alignment - 1 < internal::kMaxPooledAlignment &&
           (alignment & (alignment - 1)) == 0;
  }
  // The cache's BlockReleaser (src/pool_resource.cc), which calls the two below.
  class Releaser;
  void Release(size_t cls, void* const* blocks, size_t n);
  void ReleaseIdle(bool everything, internal::SweepPacer* pacer);

  // Takes a block outside the spans from upstream and records it in large_ (may throw,
  // leaving nothing taken).
  void* TakeLarge(size_t bytes, size_t alignment);
  // Gives back such a block: aborts when large_ has no record of it with these `bytes` and
  // `alignment` (a pointer the resource did not take, a second deallocate, another size).
  void GiveBackLarge(void* p, size_t bytes, size_t alignment);
  // Gives `p` (`bytes` long, obtained from upstream_ with `alignment`) back upstream, its
  // pages discarded first when it is at least discard_min_bytes_ long; GiveBackOf() calls it
  // for the spans and the record of larger blocks (`self` is the resource).
  void GiveBack(void* p, size_t bytes, size_t alignment);
  static void GiveBackOf(void* self, void* p, size_t bytes, size_t alignment);

  // For the inline paths: min(max_block_size_, internal::kSmallSizeLimit), and the cache's
  // Row() of the class of each size up to it, by internal::SmallSizeIndex().
  const size_t inline_limit_;
  std::array<char*, internal::kSmallSizeClasses.size()> small_rows_;
  std::pmr::memory_resource* const upstream_;
  // upstream_, counted (src/upstream_meter.h): every span and larger block goes through it.
  const std::unique_ptr<internal::UpstreamMeter> meter_;
  const size_t max_block_size_;
  const size_t discard_min_bytes_;  // 0: never.
  // Per class, how many blocks a miss takes from upstream (Options::refill_bytes), 1 to
  // kMaxRefill.
  static constexpr size_t kMaxRefill = 64;
  const std::array<uint8_t, internal::kNumSizeClasses> refill_blocks_;
  const bool debug_;
  std::unique_ptr<internal::DebugRegistry> registry_;  // Set when debug_.
  // Set by the destructor, read by a checked deallocate (see ~PoolResource()).
  std::atomic<bool> destroyed_{false};
  // Counters that slow paths on every CPU add to: a line of their own, away from what the
  // inline paths and every slow path read. (The span classes' refills count in their shard of
  // the spans instead.)
  struct alignas(64) Counters {
    std::atomic<uint64_t> direct{0};
    std::atomic<uint64_t> refilled{0};
    std::atomic<uint64_t> discarded_bytes{0};
  };
  Counters counters_;
  // Where the blocks of the classes up to internal::kSpanMaxClassSize come from and go back
  // to (src/spans.h), and the record of every other block taken from upstream
  // (src/large_blocks.h); before cache_, which gives its blocks back to them when destroyed,
  // after which they give back what is left, blocks still in use included.
  const std::unique_ptr<internal::Spans> spans_;
  const std::unique_ptr<internal::LargeBlocks> large_;
  const std::unique_ptr<Releaser> releaser_;
  const std::unique_ptr<internal::BlockCache> cache_;
  const internal::LocalCache local_;  // cache_->local(), for the inline paths.
  // Last: unregisters before the rest goes.
  const std::unique_ptr<internal::StatsReportEntry> report_;
};

// ScopedDefaultResource
//
// Installs a resource as std::pmr::get_default_resource() for the lifetime of a scope and
// restores the previous one on destruction:
//
//   syncpool::ScopedDefaultResource use_pool;   // PoolResource::Default()
//   std::pmr::vector<int> v;                     // allocates from the pool
//
// The default resource is process-wide, so the scope is too: other threads see the change.
// Scopes must be destroyed in the reverse order of their construction.
class ScopedDefaultResource {
 public:
  explicit ScopedDefaultResource(std::pmr::memory_resource* resource = &PoolResource::Default())
      : previous_(std::pmr::set_default_resource(resource)) {}
  ScopedDefaultResource(const ScopedDefaultResource&) = delete;
  ScopedDefaultResource& operator=(const ScopedDefaultResource&) = delete;
  ~ScopedDefaultResource() { std::pmr::set_default_resource(previous_); }

 private:
  std::pmr::memory_resource* const previous_;
};

}  // namespace syncpool

#endif  // SYNCPOOL_POOL_RESOURCE_H_
