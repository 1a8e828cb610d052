// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/cpu_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include "absl/base/config.h"
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
#include <sanitizer/lsan_interface.h>
#endif

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

namespace syncpool {
namespace internal {

namespace {

// An anonymous mapping of `bytes` (whole pages) for slot arrays, reserved without swap
// accounting (MAP_NORESERVE): a stack touches the pages of its arrays only as far as its
// counts reach, so reserve costs address space, not memory. Null when it cannot be made.
void** MapSlots(size_t bytes) {
  void* mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapped == MAP_FAILED) return nullptr;
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  // The leak checker must see the cached blocks the slots point to as reachable.
  __lsan_register_root_region(mapped, bytes);
#endif
  return static_cast<void**>(mapped);
}

void UnmapSlots(void** slots, size_t bytes) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  __lsan_unregister_root_region(slots, bytes);
#endif
  munmap(slots, bytes);
}

// The bytes of a mapping of `slots` slots, in whole pages.
size_t SlotBytes(size_t slots) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (std::max<size_t>(slots, 1) * sizeof(void*) + page - 1) / page * page;
}

}  // namespace

// The slot arrays begin as one mapping for every class, each class's three arrays holding its
// first reserve; a class that grows past it moves to a mapping of its own (MoveArrays()).
// Sweeps rotate the three arrays of a class among its three pointers, so every array stays
// inside the mapping the class has.
CpuCache* CpuCache::Create(char* stacks, size_t class_stride, const size_t* class_bytes,
                           const uint32_t* capacities, const uint32_t* max_capacities,
                           size_t num_classes, bool per_thread, uint32_t first_reserve) {
  auto reserve_of = [&](size_t c) {
    const uint32_t max = max_capacities[c];
    return std::max(std::min(capacities[c], max), std::min(first_reserve, max));
  };
  size_t slots = 0;
  for (size_t c = 0; c < num_classes; ++c) slots += 3 * size_t{reserve_of(c)};
  const size_t bytes = SlotBytes(slots);
  void** slot = MapSlots(bytes);
  if (slot == nullptr) throw std::bad_alloc();
  CpuCache* cache;
  try {
    cache = new CpuCache();
  } catch (...) {
    UnmapSlots(slot, bytes);
    throw;
  }
  cache->num_classes = num_classes;
  cache->per_thread = per_thread;
  cache->stacks_ = stacks;
  cache->class_stride_ = class_stride;
  cache->slots_ = slot;
  cache->slots_bytes_ = bytes;
  for (size_t c = 0; c < num_classes; ++c) {
    const uint32_t reserve = reserve_of(c);
    ClassStack* s = new (stacks + c * class_stride) ClassStack();
    s->capacity.store(std::min(capacities[c], max_capacities[c]), std::memory_order_relaxed);
    s->min_capacity = std::min(capacities[c], max_capacities[c]);
    s->max_capacity = max_capacities[c];
    s->reserve.store(reserve, std::memory_order_relaxed);
    s->block_bytes = static_cast<uint32_t>(class_bytes[c]);
    cache->capacity_bytes.store(
        cache->capacity_bytes.load(std::memory_order_relaxed) +
            uint64_t{s->min_capacity} * s->block_bytes,
        std::memory_order_relaxed);
    s->primary = slot;
    s->victim = slot + reserve;
    s->spare = slot + 2 * size_t{reserve};
    slot += 3 * size_t{reserve};
  }
  return cache;
}

void CpuCache::Destroy(CpuCache* cache) {
  void** const slots = cache->slots_;
  const size_t bytes = cache->slots_bytes_;
  for (size_t c = 0; c < cache->num_classes; ++c) {
    ClassStack& s = cache->stack(c);
    if (s.own_slots != nullptr) UnmapSlots(s.own_slots, SlotBytes(3 * size_t{s.reserve.load()}));
    s.~ClassStack();
  }
  delete cache;
  UnmapSlots(slots, bytes);
}

bool CpuCache::MoveArrays(size_t cls, uint32_t reserve) {
  ClassStack& s = stack(cls);
  // Between the epoch's AgeDetach() and ReturnSpare() the epoch reads the detached array
  // outside the lock: it must come back to the mapping it left.
  if (s.spare == nullptr) return false;
  const size_t bytes = SlotBytes(3 * size_t{reserve});
  void** const moved = MapSlots(bytes);
  if (moved == nullptr) return false;  // No address space: the class keeps its capacity.
  const uint32_t primary = s.primary_count.load(std::memory_order_relaxed);
  const uint32_t victims = s.victim_count.load(std::memory_order_relaxed);
  std::memcpy(moved, s.primary, primary * sizeof(void*));
  std::memcpy(moved + reserve, s.victim, victims * sizeof(void*));
  uint64_t own = own_reserved_bytes_.load(std::memory_order_relaxed) + bytes;
  if (s.own_slots != nullptr) {
    const size_t old_bytes = SlotBytes(3 * size_t{s.reserve.load(std::memory_order_relaxed)});
    UnmapSlots(s.own_slots, old_bytes);
    own -= old_bytes;
  }
  own_reserved_bytes_.store(own, std::memory_order_relaxed);
  s.own_slots = moved;
  s.primary = moved;
  s.victim = moved + reserve;
  s.spare = moved + 2 * size_t{reserve};
  s.reserve.store(reserve, std::memory_order_relaxed);
  // The pages above the counts are untouched in the new mapping.
  s.touched.store(std::max(primary, victims), std::memory_order_relaxed);
  return true;
}

bool CpuCache::Grow(size_t cls, bool exclusive) {
  ClassStack& s = stack(cls);
  const uint32_t old = s.capacity.load(std::memory_order_relaxed);
  if (old >= s.max_capacity) return false;
  const uint32_t grown =
      static_cast<uint32_t>(std::min<uint64_t>(2 * uint64_t{old}, s.max_capacity));
  if (const uint32_t now = s.reserve.load(std::memory_order_relaxed); grown > now) {
    // Past the reserve: the arrays move, to twice the reserve (fewer moves) within the maximum.
    const uint32_t reserve = static_cast<uint32_t>(
        std::min<uint64_t>(std::max<uint64_t>(grown, 2 * uint64_t{now}), s.max_capacity));
    if (!exclusive || !MoveArrays(cls, reserve)) return false;
  }
  s.capacity.store(grown, std::memory_order_relaxed);
  AddCapacityBytes(s, old, grown);
  s.touched.store(std::max(s.touched.load(std::memory_order_relaxed), grown),
                  std::memory_order_relaxed);
  grows.store(grows.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Under `lock` no remote operation is under way, so a nonzero open_capacity means the cache
  // is open to sequences (in the locked mode it stays 0).
  if (OpenField(s).load(std::memory_order_relaxed) != 0) {
    OpenField(s).store(grown, std::memory_order_release);
  }
  return true;
}

void CpuCache::OpenToSequences() {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    ClassStack& s = stack(cls);
    OpenField(s).store(s.capacity.load(std::memory_order_relaxed), std::memory_order_release);
  }
}

void CpuCache::CloseToSequences() {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    // Sequentially consistent in the per-thread mode under ThreadSanitizer, where the close
    // and the owner's busy flag are ordered by the memory model instead of a membarrier.
    OpenField(stack(cls)).store(0, per_thread ? std::memory_order_seq_cst
                                              : std::memory_order_relaxed);
  }
}

bool CpuCache::AnyBusy() const {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    if (stack(cls).busy.load(std::memory_order_seq_cst) != 0) return true;
  }
  return false;
}

void CpuCache::ClearBusy() {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    stack(cls).busy.store(0, std::memory_order_relaxed);
  }
}

void** CpuCache::AgeDetach(size_t cls, bool whole_primary, uint32_t* detached) {
  ClassStack& s = stack(cls);
  void** const retired = s.victim;
  const uint32_t victims = s.victim_count.load(std::memory_order_relaxed);
  *detached = victims;
  const uint32_t primary = s.primary_count.load(std::memory_order_relaxed);
  uint32_t keep = 0;
  if (!whole_primary) {
    const uint32_t dug = s.epoch_count - std::min(s.low_water, s.epoch_count);
    const uint32_t from_victims = s.epoch_victims - std::min(victims, s.epoch_victims);
    keep = std::min(dug + from_victims, primary);
  }
  const uint32_t idle = primary - keep;
  // The bottom `idle` blocks stay where they are and become the victims; the top `keep`
  // blocks, the working set, move to the spare array, the new primary.
  std::memcpy(s.spare, s.primary + idle, keep * sizeof(void*));
  s.victim = s.primary;
  s.primary = s.spare;
  s.spare = nullptr;
  s.victim_count.store(idle, std::memory_order_relaxed);
  s.primary_count.store(keep, std::memory_order_relaxed);
  s.low_water = keep;
  s.epoch_count = keep;
  s.epoch_victims = idle;
  Shrink(cls, /*to_start=*/false);
  return retired;
}

void CpuCache::Shrink(size_t cls, bool to_start) {
  ClassStack& s = stack(cls);
  if (s.overflows.exchange(0, std::memory_order_relaxed) != 0) return;
  const uint32_t cap = s.capacity.load(std::memory_order_relaxed);
  const uint32_t shrunk = std::max({to_start ? 0 : cap / 2, s.min_capacity,
                                    s.primary_count.load(std::memory_order_relaxed),
                                    s.victim_count.load(std::memory_order_relaxed)});
  s.capacity.store(shrunk, std::memory_order_relaxed);
  AddCapacityBytes(s, cap, shrunk);
}

void CpuCache::AddCapacityBytes(const ClassStack& s, uint32_t from, uint32_t to) {
  const uint64_t now = capacity_bytes.load(std::memory_order_relaxed);
  capacity_bytes.store(now + (uint64_t{to} - uint64_t{from}) * s.block_bytes,
                       std::memory_order_relaxed);
}

bool CpuCache::CanShrink() const {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    const ClassStack& s = stack(cls);
    const uint32_t cap = s.capacity.load(std::memory_order_relaxed);
    if (cap > s.min_capacity || s.touched.load(std::memory_order_relaxed) > cap) return true;
  }
  return false;
}

void CpuCache::ReleaseSlotPages() {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  for (size_t cls = 0; cls < num_classes; ++cls) {
    ClassStack& s = stack(cls);
    const uint32_t cap = s.capacity.load(std::memory_order_relaxed);
    const uint32_t touched = s.touched.load(std::memory_order_relaxed);
    if (touched <= cap) continue;
    for (void** slots : {s.primary, s.victim, s.spare}) {
      if (slots == nullptr) continue;
      const uintptr_t from = (reinterpret_cast<uintptr_t>(slots + cap) + page - 1) & ~(page - 1);
      const uintptr_t to = reinterpret_cast<uintptr_t>(slots + touched) & ~(page - 1);
      if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
    }
    s.touched.store(cap, std::memory_order_relaxed);
  }
}

uint64_t CpuCache::Activity() const {
  uint64_t activity = Hits() +
                      Misses() +
                      spills.load(std::memory_order_relaxed) +
                      changes.load(std::memory_order_relaxed);
  // The counts move both ways: weight them so that a push and a pop cannot cancel out the
  // hit the pop counted.
  for (size_t cls = 0; cls < num_classes; ++cls) {
    activity += (uint64_t{PrimaryCount(cls)} + VictimCount(cls)) << 32;
  }
  return activity;
}

uint64_t CpuCache::Misses() const {
  uint64_t n = misses.load(std::memory_order_relaxed);
  for (size_t cls = 0; cls < num_classes; ++cls) {
    n += stack(cls).misses.load(std::memory_order_relaxed);
  }
  return n;
}

uint64_t CpuCache::Hits() const {
  uint64_t hits = 0;
  for (size_t cls = 0; cls < num_classes; ++cls) {
    hits += stack(cls).hits.load(std::memory_order_relaxed);
  }
  return hits;
}

size_t CpuCache::TakeVictims(size_t cls, void** out, size_t room) {
  ClassStack& s = stack(cls);
  const uint32_t victims = s.victim_count.load(std::memory_order_relaxed);
  const uint32_t k = static_cast<uint32_t>(std::min<size_t>(room, victims));
  std::memcpy(out, s.victim + (victims - k), k * sizeof(void*));
  s.victim_count.store(victims - k, std::memory_order_relaxed);
  s.epoch_victims = std::min(s.epoch_victims, victims - k);
  return k;
}

size_t CpuCache::TakeAll(size_t cls, void** out, size_t room) {
  const size_t victims = TakeVictims(cls, out, room);
  ClassStack& s = stack(cls);
  const uint32_t primary = s.primary_count.load(std::memory_order_relaxed);
  const uint32_t k = static_cast<uint32_t>(std::min<size_t>(room - victims, primary));
  std::memcpy(out + victims, s.primary + (primary - k), k * sizeof(void*));
  s.primary_count.store(primary - k, std::memory_order_relaxed);
  s.low_water = std::min(s.low_water, primary - k);
  s.epoch_count = std::min(s.epoch_count, primary - k);
  return victims + k;
}

}  // namespace internal
}  // namespace syncpool
