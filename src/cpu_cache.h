// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/cpu_cache.h
// -----------------------------------------------------------------------------
//
// The per-CPU structure: one CPU's stacks of cached blocks, two generations per size class,
// behind one short lock. Not part of syncpool's API. The caching policy that decides what goes
// where lives one layer up, in block_cache.h.
//
// Who may change a stack (its count, its slots, which array is primary and which victim), by
// mode (the modes: block_cache.h; each protocol is stated where it is carried out):
//   - locked: whoever holds `lock`, local and remote operations alike (a thread that migrated
//     after reading its CPU id merely uses another CPU's cache under that cache's lock).
//   - rseq: the CPU's restartable sequences, never under `lock`; or a remote operation that
//     holds `lock` and has closed the cache to them (CloseToSequences() to OpenToSequences()):
//     percpu_rseq.h.
//   - per-thread: the column's owner inside an inline operation (owner_open, busy); or whoever
//     holds `lock`, a remote operation once the column is closed and its owner out:
//     local_cache.h.
//
// All modes:
//   - Nothing slow happens while a cache is locked or closed: blocks to release are copied
//     out and released afterwards.
//   - The counts are atomics written only by the cache's owner of the moment (relaxed, so a
//     write costs a plain store) and read without it by statistics and by probes, which
//     tolerate stale values.
//   - The slow-path counters use fetch_add because they are updated outside any ownership.
//
// Layout: a CPU's ClassStacks lie in the owning BlockCache's region, one row per class with
// 128 bytes per CPU, so that a sequence finds its stack at row + (cpu << 7): a shift, no
// load. The rest of a CPU's cache (the lock, the slow-path counters) is the CpuCache, a
// separate allocation, as are the slot arrays. CpuCache::Create() builds both the first time
// the CPU uses the cache; they live until the owning BlockCache is destroyed.

#ifndef SYNCPOOL_SRC_CPU_CACHE_H_
#define SYNCPOOL_SRC_CPU_CACHE_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "syncpool/internal/percpu_abi.h"
#include "src/slot_array.h"
#include "src/spinlock.h"

namespace syncpool {
namespace internal {

class alignas(kCacheLineSize) CpuCache {
 public:
  // The slots per array a class reserves at first (or its capacity, or its maximum, if that
  // is smaller): 2 KiB per array.
  static constexpr uint32_t kFirstReserveSlots = 256;

  // CpuCache::Create()
  //
  // Builds a cache with one stack per class, class `c` holding capacities[c] blocks per
  // generation to begin with and able to grow to max_capacities[c] (>= capacities[c]), its
  // arrays reserving max(capacities[c], min(`first_reserve`, max_capacities[c])) slots, its
  // stack of class `c` at `stacks` + c * `class_stride` (in the BlockCache's
  // region: kCacheLineSize-aligned, zero-filled), closed to sequences. Throws std::bad_alloc,
  // building nothing, when it cannot allocate. CpuCache::Destroy() frees it (its blocks must
  // have been released) and ends the stacks' lifetime; the region stays the caller's.
  // `class_bytes[c]` is the size of a block of class c (for capacity_bytes).
  static CpuCache* Create(char* stacks, size_t class_stride, const size_t* class_bytes,
                          const uint32_t* capacities, const uint32_t* max_capacities,
                          size_t num_classes, bool per_thread = false,
                          uint32_t first_reserve = kFirstReserveSlots);
  static void Destroy(CpuCache* cache);

  // CpuCache::OpenToSequences(), CpuCache::CloseToSequences()
  //
  // Open: every class's open_capacity becomes its capacity (release stores: what the owner
  // did before is visible to the sequences that see the cache open). Close: every
  // open_capacity becomes 0; sequences that started before may still commit until the CPU is
  // fenced (see percpu_rseq.h).
  void OpenToSequences() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);
  void CloseToSequences() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // CpuCache::IsOpenToSequences()
  //
  // Whether class `cls` reads as open to sequences (racy: a hint for the slow path).
  bool IsOpenToSequences(size_t cls) const {
    const ClassStack& s = stack(cls);
    return OpenField(s).load(std::memory_order_acquire) ==
           s.capacity.load(std::memory_order_relaxed);
  }

  // CpuCache::AnyBusy()
  //
  // Per-thread mode: whether the owning thread reads as inside an inline operation on some
  // class (see thread_slots.h: meaningful after the column was closed and fenced).
  bool AnyBusy() const;

  // CpuCache::ClearBusy()
  //
  // Per-thread mode, in a fork child: clears every class's busy flag.
  void ClearBusy();

  // CpuCache::Capacity()
  //
  // Class `cls`'s capacity now (racy: a hint for the slow path).
  uint32_t Capacity(size_t cls) const {
    return stack(cls).capacity.load(std::memory_order_relaxed);
  }

  // CpuCache::Grow()
  //
  // Doubles the capacity of class `cls` (up to its max_capacity) and, when the cache is open
  // to sequences, lets them use it at once. Returns false when it is at its maximum already,
  // or when the doubling needs the arrays moved (GrowMovesArrays()) and that cannot be done:
  // `exclusive` false (an inline operation may be using the arrays), the spare array
  // detached, or no mapping to be had.
  bool Grow(size_t cls, bool exclusive) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // CpuCache::GrowMovesArrays()
  //
  // Whether the next doubling of class `cls` goes past its reserve, as Grow() decides it
  // (racy: a hint for the slow path, which then grows inside a remote operation). A capacity
  // below the reserve may double past it: 192 of a reserve of 256 grows to 384.
  bool GrowMovesArrays(size_t cls) const {
    const ClassStack& s = stack(cls);
    const uint64_t cap = s.capacity.load(std::memory_order_relaxed);
    return cap < s.max_capacity &&
           std::min<uint64_t>(2 * cap, s.max_capacity) > s.reserve.load(std::memory_order_relaxed);
  }

  // CpuCache::ReservedBytes()
  //
  // The address space this cache's slot arrays hold, in bytes (racy, as statistics are).
  uint64_t ReservedBytes() const {
    return slots_bytes_ + own_reserved_bytes_.load(std::memory_order_relaxed);
  }

  // CpuCache::Shrink()
  //
  // The epoch's sizing step for class `cls`: when no Put found the stack full since the last
  // one, halves the capacity (`to_start`: takes it back to where it started at once), but
  // never below min_capacity nor below what either generation holds. Resets the overflow
  // count. REQUIRES: the cache is closed to sequences (a remote operation), or the locked mode.
  void Shrink(size_t cls, bool to_start) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // CpuCache::CapacityBytes()
  //
  // What one generation of this cache may hold now, in bytes, over all classes (racy: a hint
  // for the growth budget).
  uint64_t CapacityBytes() const { return capacity_bytes.load(std::memory_order_relaxed); }

  // CpuCache::CanShrink()
  //
  // Whether some class's capacity is above where it started, or its slot arrays hold pages
  // above its capacity (racy: a hint for the sweeper).
  bool CanShrink() const;

  // CpuCache::ReleaseSlotPages()
  //
  // Gives the system back the whole pages of every class's slot arrays above its capacity.
  // REQUIRES: no remote operation under way (the lock keeps Grow() out, and sequences stay
  // below open_capacity <= capacity), and the spare arrays are there.
  void ReleaseSlotPages() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // CpuCache::NoteOverflow()
  //
  // Records that a Put found class `cls`'s primary stack full (see ClassStack::overflows).
  void NoteOverflow(size_t cls) {
    std::atomic<uint32_t>& n = stack(cls).overflows;
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // CpuCache::stack()
  //
  // This CPU's stack of class `cls`.
  ClassStack& stack(size_t cls) {
    return *reinterpret_cast<ClassStack*>(stacks_ + cls * class_stride_);
  }
  const ClassStack& stack(size_t cls) const {
    return *reinterpret_cast<const ClassStack*>(stacks_ + cls * class_stride_);
  }

  // CpuCache::PopPrimary()
  //
  // Takes the most recently pushed block of class `cls` from the primary generation, or
  // returns nullptr if it is empty. Lowers the low-water mark (what the epoch's callers took).
  void* PopPrimary(size_t cls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    ClassStack& s = stack(cls);
    const uint32_t n = s.primary_count.load(std::memory_order_relaxed);
    if (n == 0) return nullptr;
    s.primary_count.store(n - 1, std::memory_order_relaxed);
    if (n - 1 < s.low_water) s.low_water = n - 1;
    return s.primary[n - 1];
  }

  // CpuCache::PopPrimaryToMove()
  //
  // Takes up to `n` blocks off the top of the primary generation of class `cls` into `out`
  // (the topmost last) with one store of the count; returns how many. The blocks go to the
  // TransferStack or the spans, not to a caller, so the low-water mark stays as it is.
  size_t PopPrimaryToMove(size_t cls, void** out, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    ClassStack& s = stack(cls);
    const uint32_t count = s.primary_count.load(std::memory_order_relaxed);
    const uint32_t k = n < count ? static_cast<uint32_t>(n) : count;
    for (uint32_t i = 0; i < k; ++i) out[i] = s.primary[count - k + i];
    s.primary_count.store(count - k, std::memory_order_relaxed);
    return k;
  }

  // CpuCache::PopVictim()
  void* PopVictim(size_t cls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    ClassStack& s = stack(cls);
    const uint32_t n = s.victim_count.load(std::memory_order_relaxed);
    if (n == 0) return nullptr;
    s.victim_count.store(n - 1, std::memory_order_relaxed);
    return s.victim[n - 1];
  }

  // CpuCache::PushPrimary()
  //
  // Pushes `block` onto the primary generation; returns false (and keeps nothing) when full.
  bool PushPrimary(size_t cls, void* block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    ClassStack& s = stack(cls);
    const uint32_t n = s.primary_count.load(std::memory_order_relaxed);
    if (n >= s.capacity.load(std::memory_order_relaxed)) return false;
    s.primary[n] = block;
    s.primary_count.store(n + 1, std::memory_order_relaxed);
    return true;
  }

  // CpuCache::CountHit()
  void CountHit(size_t cls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    std::atomic<uint64_t>& hits = stack(cls).hits;
    hits.store(hits.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // CpuCache::Hits(), CpuCache::Misses()
  //
  // The hits, and the misses, of every class (racy, as statistics are).
  uint64_t Hits() const;
  uint64_t Misses() const;

  // CpuCache::AgeDetach()
  //
  // The epoch step for one class, in time independent of the number of blocks cached (but for
  // the working set, which is copied): detaches the victim generation (returned, with its
  // count, for the caller to release after reopening the cache and then hand back with
  // ReturnSpare()), and makes the primary generation the victim: all of it (`whole_primary`,
  // Go's policy), or all but its working set: as many blocks from the top of the stack as the
  // epoch took, from below the level the last epoch left the primary stack and from the
  // victims, which move to the spare array, the new primary. Blocks only given back (a burst
  // being freed) are no working set: idle blocks still leave within two epochs.
  // Then the capacity: Shrink().
  // REQUIRES: the spare array is there (ReturnSpare() followed the last AgeDetach()).
  void** AgeDetach(size_t cls, bool whole_primary, uint32_t* detached)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // CpuCache::ReturnSpare()
  //
  // Installs the array AgeDetach() detached, once its blocks are released, as the spare.
  void ReturnSpare(size_t cls, void** slots) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    stack(cls).spare = slots;
  }

  // CpuCache::TakeAll()
  //
  // Moves up to `room` blocks of class `cls` to `out`: the victim generation first, then the
  // primary from its top. Returns how many blocks were moved.
  size_t TakeAll(size_t cls, void** out, size_t room) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // Racy reads for statistics and probes: may be stale by the time they return.
  uint32_t PrimaryCount(size_t cls) const {
    return stack(cls).primary_count.load(std::memory_order_relaxed);
  }
  uint32_t VictimCount(size_t cls) const {
    return stack(cls).victim_count.load(std::memory_order_relaxed);
  }
  // True when no class reads as holding a block.
  bool LooksEmpty() const {
    for (size_t cls = 0; cls < num_classes; ++cls) {
      if (PrimaryCount(cls) != 0 || VictimCount(cls) != 0) return false;
    }
    return true;
  }

  // Serializes the operations that are not restartable sequences: every operation in the
  // locked mode, and remote operations (with the cache closed to sequences) in the rseq mode.
  SpinLock lock;

  // The sweeper's own: a CPU's activity (hits, misses and spills, plus the blocks it holds)
  // as the last epoch left it, to tell a CPU that nobody used since.
  uint64_t activity_at_last_epoch = 0;

  // CpuCache::Activity()
  //
  // A figure that any Get, Put or spill on this CPU changes: pops raise the hits, a Get that
  // finds nothing raises `misses`, a push raises a count, a spill raises `spills`, and what
  // lowers counts without a hit (a Put that made room by moving a batch to the TransferStack,
  // a drain between epochs) raises `changes`, so that counts can never come back to what the
  // last epoch recorded unseen. (Read without the lock: a stale read only delays draining a
  // cold CPU by an epoch.)
  uint64_t Activity() const;

  // CpuCache::TakeVictims()
  //
  // Moves up to `room` blocks of class `cls`'s victim generation to `out`, from its top.
  // Returns how many blocks were moved.
  size_t TakeVictims(size_t cls, void** out, size_t room) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  // CpuCache::ForEachBlock(), CpuCache::TakeIf()
  //
  // For the budget of a cache that counts what its blocks own (block_cache.h): `fn(block)`
  // for every block of class `cls` (the victim generation, or both generations), and the move
  // to `out` (at most `room`) of those for which `take(block)` holds, the others staying in
  // their generation in their order. Returns how many blocks were moved.
  template <typename Fn>
  void ForEachBlock(size_t cls, bool victims_only, Fn fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    ClassStack& s = stack(cls);
    const uint32_t victims = s.victim_count.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < victims; ++i) fn(s.victim[i]);
    if (victims_only) return;
    const uint32_t primary = s.primary_count.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < primary; ++i) fn(s.primary[i]);
  }
  template <typename Take>
  size_t TakeIf(size_t cls, bool victims_only, Take take, void** out, size_t room)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    ClassStack& s = stack(cls);
    size_t moved = 0;
    const uint32_t victims =
        TakeFromSlots(s.victim, s.victim_count.load(std::memory_order_relaxed), take, out, room, &moved);
    s.victim_count.store(victims, std::memory_order_relaxed);
    s.epoch_victims = std::min(s.epoch_victims, victims);
    if (victims_only) return moved;
    const uint32_t primary = TakeFromSlots(
        s.primary, s.primary_count.load(std::memory_order_relaxed), take, out, room, &moved);
    s.primary_count.store(primary, std::memory_order_relaxed);
    s.low_water = std::min(s.low_water, primary);
    s.epoch_count = std::min(s.epoch_count, primary);
    return moved;
  }

  // Slow-path counters, updated with fetch_add.
  std::atomic<uint64_t> misses{0};  // Those no sequence counted (see ClassStack::misses).
  std::atomic<uint64_t> spills{0};
  std::atomic<uint64_t> grows{0};    // Grow() calls that grew: written under `lock`.
  // The sum over classes of capacity * block_bytes: what one generation of this cache may
  // hold, in bytes. Written under `lock` with the capacities (Grow(), Shrink()); read without
  // it (relaxed) by the growth budget, for which a stale value only delays a decision.
  std::atomic<uint64_t> capacity_bytes{0};
  std::atomic<uint64_t> changes{0};  // For Activity() only.

  size_t num_classes = 0;  // Immutable after creation.
  // The per-thread mode (thread_slots.h): owner_open, not open_capacity, opens the stacks.
  bool per_thread = false;  // Immutable after creation.

 private:
  CpuCache() = default;
  // The field that opens class stack `s` to this mode's inline operations.
  std::atomic<uint32_t>& OpenField(ClassStack& s) const {
    return per_thread ? s.owner_open : s.open_capacity;
  }
  const std::atomic<uint32_t>& OpenField(const ClassStack& s) const {
    return per_thread ? s.owner_open : s.open_capacity;
  }
  // Moves capacity_bytes by what class stack `s`'s capacity going `from` -> `to` changes.
  void AddCapacityBytes(const ClassStack& s, uint32_t from, uint32_t to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);
  // Moves class `cls`'s arrays to a mapping of its own of `reserve` slots each; false (and
  // nothing changed) when the spare is detached or the mapping cannot be made. REQUIRES: no
  // inline operation can be using the arrays (see Grow()).
  bool MoveArrays(size_t cls, uint32_t reserve) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock);

  char* stacks_ = nullptr;     // This CPU's stack of class 0, in the region.
  size_t class_stride_ = 0;    // From one class's stack to the next one's.
  void** slots_ = nullptr;     // The first mapping: every class's arrays until they move.
  size_t slots_bytes_ = 0;     // Its size.
  // The sizes of the classes' own mappings (ClassStack::own_slots), summed. Written under
  // `lock`; read without it by statistics.
  std::atomic<uint64_t> own_reserved_bytes_{0};
};

static_assert(std::is_standard_layout_v<ClassStack>);

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_CPU_CACHE_H_
