// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The span layer of PoolResource: where the blocks of its small classes (up to
// kSpanMaxClassSize) live when no cache holds them.
//
// A span is a run of SpanBytes(cls) bytes obtained upstream with that alignment, so that the
// span of a block is its address with the low bits cleared. It holds a header near its start (who owns
// it, its class, a bitmap of its free blocks) and holds blocks of one class after it. The
// layer hands blocks out in address order: a refill takes the lowest free blocks of the
// class's current span, and when that span has none left, the next one comes from the spans
// that have some blocks free (the one most recently freed into first), then from the wholly
// free ones, then from upstream. A block that leaves the caches (a spill, a sweep, a drain)
// goes back to its span's bitmap. A span goes back upstream only when every one of its blocks
// is free, at the next epoch or drain (ReleaseEmpty()), or when the resource is destroyed.
//
// Why: the caches above are LIFO stacks, and once blocks cycle through them an allocation
// gets whatever was freed last, scattered over the whole working set. Behind caches kept small
// (block_cache.h), a structure built in order gets its blocks in address order again, a span
// at a time, as allocators that keep their LIFO layer small do.
//
// Shards: the lists and current spans are kept per shard, one shard per CPU (up to kMaxShards,
// CPUs beyond that share), made on first use. A refill takes from the shard of the CPU it runs
// on, and a span stays in the shard that took it from upstream until it goes back: blocks
// that come back go to their span's shard, whichever CPU frees them. So two threads on two
// CPUs fill their structures from spans of their own, and do not share cache lines or a lock
// while each frees what it allocated.
//
// Thread safety: every member function is thread-safe. Protocol: each class of each shard has
// one SpinLock; a span's header (its bitmap, counts and links) and the lists of its shard's
// class are read and written only under that lock. The tag and the shard of a span's header
// are written before the span is first handed out and not again until it goes upstream, so
// Return() reads them without the lock to find which lock to take (a block being returned
// keeps its span from going upstream). A span that is wholly free, taken off its lists under
// the lock, belongs to the thread that took it until it has gone upstream. A shard, once
// published (made under shards_lock_, stored with release ordering), lives as long as the
// layer. Blocks themselves are never touched here (the caches and their users own them),
// except for AddressSanitizer's poisoning of the free ones.
//
// Misuse: a block handed back that is not the start of a block of this layer's span of that
// class (a pointer from elsewhere, a size that maps to another class), or that is free
// already (a second deallocate), aborts with a message naming it. These checks run where
// blocks come back to the spans, so they catch misuse late, when they catch it at all; the
// debug checks (Options::debug_checks) catch it at the deallocate.

#ifndef SYNCPOOL_SRC_SPANS_H_
#define SYNCPOOL_SRC_SPANS_H_

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "syncpool/internal/size_class.h"
#include "src/spinlock.h"
#include "src/sweepable.h"
#include "syncpool/stats.h"

namespace syncpool {
namespace internal {

// The largest class kept in spans: blocks up to 4 KiB. Larger blocks come from upstream one
// by one (few of them fit a span, and their own pages give them locality).
inline constexpr size_t kSpanMaxClassSize = 4096;
inline constexpr size_t kNumSpanClasses = SizeClassOf(kSpanMaxClassSize) + 1;

// SpanBytes()
//
// The size (and alignment) of a span of class `cls`: 64 KiB, or room for 32 blocks rounded up
// to a power of two where that is more.
constexpr size_t SpanBytes(size_t cls) {
  const size_t room = std::bit_ceil(ClassSize(cls) * 32);
  return room > 64 * 1024 ? room : 64 * 1024;
}

class Spans {
 public:
  // How a span goes back: `give_back(context, span, bytes, alignment)` must deallocate it
  // upstream (the owner may discard its pages first).
  using GiveBackFn = void (*)(void* context, void* span, size_t bytes, size_t alignment);

  // Spans for the classes below `num_classes` (at most kNumSpanClasses of them), allocated
  // from `upstream`, which must outlive the layer, and given back through `give_back`. `pool`
  // names the owner in misuse reports (PoolLabel()).
  Spans(std::pmr::memory_resource* upstream, size_t num_classes, GiveBackFn give_back,
        void* context, std::string pool);
  Spans(const Spans&) = delete;
  Spans& operator=(const Spans&) = delete;

  // Spans::~Spans()
  //
  // Gives every span back upstream, with whatever blocks are still handed out from it (as the
  // std::pmr pools do at destruction).
  ~Spans();

  // Spans::Serves()
  //
  // Whether blocks of class `cls` live in spans.
  bool Serves(size_t cls) const { return cls < num_classes_; }

  // The owner's name in misuse reports.
  const std::string& pool() const { return pool_; }

  // Spans::Take()
  //
  // Up to `n` (at least 1) free blocks of class `cls`, lowest address first, into `out`;
  // returns how many. Takes a span from upstream when none has a free block: an exception
  // from upstream propagates when not even one block could be had (nothing changed then).
  // A refill: all but the first of the blocks are counted as refilled (Counts::refilled), in
  // the shard, under the lock it holds anyway (a counter of the resource's, written by every
  // CPU's refills, would be a line they all write). REQUIRES: Serves(cls).
  size_t Take(size_t cls, void** out, size_t n);

  // Spans::Return()
  //
  // Gives `n` blocks of class `cls` back to their spans. Aborts on misuse (see above).
  // REQUIRES: Serves(cls).
  void Return(size_t cls, void* const* blocks, size_t n);

  // Spans::ReleaseAll()
  //
  // Gives every span back upstream, with whatever blocks are still handed out from it (the
  // std::pmr pools' release()); returns their bytes. The layer stays usable. REQUIRES: no
  // other thread uses the layer meanwhile.
  uint64_t ReleaseAll();

  // Spans::ReleaseEmpty()
  //
  // Gives wholly free spans back upstream and returns their bytes: every one with
  // `everything`, otherwise those no block was taken from since the previous call (the others
  // go at the next call if they stay unused). With a `pacer` (a sweep's), calls its Pause()
  // after each span given back, with no lock of the layer held.
  uint64_t ReleaseEmpty(bool everything, SweepPacer* pacer = nullptr);

  // What the layer holds now, for Stats (read without locks: approximate while it changes).
  struct Counts {
    uint64_t span_bytes = 0;  // Spans held from upstream.
    uint64_t block_bytes = 0;  // All the blocks in them.
    uint64_t free_bytes = 0;  // Blocks free in them.
    uint64_t released_bytes = 0;  // Spans given back upstream so far.
    uint64_t refilled = 0;  // Blocks counted by Take().
  };
  // With `classes` (one entry per class, as Stats::classes), also each class's spans, free
  // blocks and in-use blocks (taken from its spans, less its `cached_blocks`, already there).
  Counts GetCounts(std::vector<ClassStats>* classes = nullptr) const;

  // Around fork(): the shards' lock, then every class's lock of every shard (see
  // Sweepable::LockForFork()).
  void LockForFork();
  void UnlockAfterFork();

 private:
  struct Span;
  // An intrusive doubly linked list of spans, under its class's lock.
  struct List {
    Span* head = nullptr;
    void Push(Span* s);
    void Remove(Span* s);
  };
  // Where a span is: which list of its class, or the class's current span (kEmpty + i:
  // empty[i]).
  enum Place : uint8_t { kCurrent, kPartial, kFull, kEmpty };
  // The shape of a class's spans (constant).
  struct Geometry {
    uint32_t size = 0;       // Block bytes.
    uint32_t capacity = 0;   // Blocks per span.
    uint32_t words = 0;      // Bitmap words.
    uint32_t offset = 0;     // Of the first block from the span's start.
    uint64_t reciprocal = 0; // ceil(2^32 / size): an index by multiplication.
    size_t span_bytes = 0;
    uint32_t span_shift = 0;  // log2(span_bytes).
  };
  struct alignas(64) Class {
    SpinLock lock;
    Span* current ABSL_GUARDED_BY(lock) = nullptr;
    List partial ABSL_GUARDED_BY(lock);
    // The wholly free spans, in two lists so that ReleaseEmpty() never walks the spans it
    // keeps: empty[fresh] holds those that became free with a block taken from them since
    // the previous ReleaseEmpty() (taken_epoch equal to epoch_ when Place() put them there),
    // empty[1 - fresh] the others. ReleaseEmpty() gives back the whole of empty[1 - fresh],
    // then swaps the roles: what was fresh goes at the next call unless a Take() moves it off
    // its list first. (A span placed while a ReleaseEmpty() is between this class and its
    // increment of epoch_ lands in the new fresh list and stays one call longer: the error
    // is towards keeping.)
    List empty[2] ABSL_GUARDED_BY(lock);
    uint8_t fresh ABSL_GUARDED_BY(lock) = 0;
    List full ABSL_GUARDED_BY(lock);
    // For GetCounts(): written under the lock, read without it.
    std::atomic<uint64_t> spans{0};
    std::atomic<uint64_t> free_blocks{0};
    std::atomic<uint64_t> refilled{0};
  };
  struct Shard {
    std::array<Class, kNumSpanClasses> classes;
  };
  // The most shards: CPUs beyond share them (cpu % kMaxShards).
  static constexpr size_t kMaxShards = 64;

  // The index of the shard of the calling thread's CPU.
  uint32_t ShardIndexOfThisThread() const;
  // Shard `i`, made on first use (may throw std::bad_alloc).
  Shard& ShardAt(uint32_t i);
  // Calls f(shard) for every shard made so far.
  template <typename F>
  void ForEachShard(F f) const;

  // The header of the span at `base`, and back (see the colours in spans.cc).
  static Span* HeaderAt(uintptr_t base, const Geometry& g);
  static char* BaseOf(const Span* s, size_t span_bytes);
  // Takes the lowest free blocks of `s` (up to `n`) into `out`; returns how many.
  static size_t TakeFrom(const Geometry& g, Span* s, void** out, size_t n);
  // The next span to take from once the current one is full: one partly free, else one
  // wholly free; nullptr when there is none.
  static Span* NextSpan(Class& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c.lock);
  // Moves `s` (not the current span) to the list its free count (and, wholly free, its
  // taken_epoch) says.
  void Place(Class& c, const Geometry& g, Span* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c.lock);
  // A new span of class `cls` for shard `shard` from upstream, its blocks all free, on no list.
  Span* NewSpan(size_t cls, uint32_t shard);
  void FreeSpan(size_t cls, Span* s);
  // Aborts: `block` is not a block of `size` bytes of this layer.
  [[noreturn]] void NotABlock(void* block, uint32_t size) const;
  // The tag a span of class `cls` of this layer carries.
  uint64_t TagOf(size_t cls) const;

  std::pmr::memory_resource* const upstream_;
  const GiveBackFn give_back_;
  void* const context_;
  const std::string pool_;
  const size_t num_classes_;
  std::array<Geometry, kNumSpanClasses> geometry_{};
  const size_t num_shards_;
  SpinLock shards_lock_;  // Held while a shard is made, and around fork().
  std::array<std::atomic<Shard*>, kMaxShards> shards_{};
  std::atomic<uint64_t> released_bytes_{0};
  // Counts ReleaseEmpty() calls; a span records it when a block is taken from it.
  std::atomic<uint32_t> epoch_{0};
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SPANS_H_
