// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "syncpool/internal/cpu_cache.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

namespace syncpool {
namespace internal {

// The slot arrays, for each class its primary, victim and spare slots, are one allocation.
// Sweeps rotate the three arrays of a class among its three pointers, so every array stays
// inside it.
CpuCache* CpuCache::Create(char* stacks, size_t class_stride, const uint32_t* capacities,
                           size_t num_classes) {
  size_t slots = 0;
  for (size_t c = 0; c < num_classes; ++c) slots += 3 * size_t{capacities[c]};
  void** slot = static_cast<void**>(::operator new(std::max<size_t>(slots, 1) * sizeof(void*)));
  CpuCache* cache;
  try {
    cache = new CpuCache();
  } catch (...) {
    ::operator delete(static_cast<void*>(slot));
    throw;
  }
  cache->num_classes = num_classes;
  cache->stacks_ = stacks;
  cache->class_stride_ = class_stride;
  cache->slots_ = slot;
  for (size_t c = 0; c < num_classes; ++c) {
    ClassStack* s = new (stacks + c * class_stride) ClassStack();
    s->capacity = capacities[c];
    s->primary = slot;
    s->victim = slot + capacities[c];
    s->spare = slot + 2 * size_t{capacities[c]};
    slot += 3 * size_t{capacities[c]};
  }
  return cache;
}

void CpuCache::Destroy(CpuCache* cache) {
  void** const slots = cache->slots_;
  for (size_t c = 0; c < cache->num_classes; ++c) cache->stack(c).~ClassStack();
  delete cache;
  ::operator delete(static_cast<void*>(slots));
}

void CpuCache::OpenToSequences() {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    ClassStack& s = stack(cls);
    s.open_capacity.store(s.capacity, std::memory_order_release);
  }
}

void CpuCache::CloseToSequences() {
  for (size_t cls = 0; cls < num_classes; ++cls) {
    stack(cls).open_capacity.store(0, std::memory_order_relaxed);
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
  return retired;
}

uint64_t CpuCache::Activity() const {
  uint64_t activity = Hits() +
                      misses.load(std::memory_order_relaxed) +
                      spills.load(std::memory_order_relaxed) +
                      changes.load(std::memory_order_relaxed);
  // The counts move both ways: weight them so that a push and a pop cannot cancel out the
  // hit the pop counted.
  for (size_t cls = 0; cls < num_classes; ++cls) {
    activity += (uint64_t{PrimaryCount(cls)} + VictimCount(cls)) << 32;
  }
  return activity;
}

uint64_t CpuCache::Hits() const {
  uint64_t hits = 0;
  for (size_t cls = 0; cls < num_classes; ++cls) {
    hits += stack(cls).hits.load(std::memory_order_relaxed);
  }
  return hits;
}

size_t CpuCache::TakeVictims(size_t cls, void** out) {
  ClassStack& s = stack(cls);
  const uint32_t victims = s.victim_count.load(std::memory_order_relaxed);
  std::memcpy(out, s.victim, victims * sizeof(void*));
  s.victim_count.store(0, std::memory_order_relaxed);
  s.epoch_victims = 0;
  return victims;
}

size_t CpuCache::TakeAll(size_t cls, void** out) {
  ClassStack& s = stack(cls);
  const uint32_t primary = s.primary_count.load(std::memory_order_relaxed);
  const uint32_t victim = s.victim_count.load(std::memory_order_relaxed);
  std::memcpy(out, s.primary, primary * sizeof(void*));
  std::memcpy(out + primary, s.victim, victim * sizeof(void*));
  s.primary_count.store(0, std::memory_order_relaxed);
  s.victim_count.store(0, std::memory_order_relaxed);
  s.low_water = 0;
  s.epoch_count = 0;
  s.epoch_victims = 0;
  return size_t{primary} + victim;
}

}  // namespace internal
}  // namespace syncpool
