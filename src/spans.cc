// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The span layer: spans, their bitmaps and the lists of each class (see spans.h).

#include "src/spans.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

#include "absl/base/config.h"
#include "src/debug_registry.h"
#include "src/current_cpu.h"
#include "src/cpu.h"

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
#include <sanitizer/asan_interface.h>
#endif

namespace syncpool {
namespace internal {

// The header at the start of every span; its bitmap follows it (a set bit is a free block),
// then, from Geometry::offset, the blocks.
struct Spans::Span {
  uint64_t tag;  // TagOf(cls): checked for every block that comes back.
  Span* prev;
  Span* next;
  uint32_t free;  // Set bits in `bits`.
  uint32_t hint;  // No bitmap word below this one has a set bit.
  uint32_t shard;  // Index into shards_: constant while the layer holds the span.
  uint8_t place;  // Spans::Place.
  uint32_t taken_epoch;  // epoch_ when a block was last taken from the span.
  uint64_t bits[];
};

namespace {

constexpr uint64_t kTagSeed = 0x5350414e53706f6fULL;

constexpr size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Headers are coloured: a span's header starts kColorBytes * (its span number modulo
// kColors) bytes into it. Spans are aligned to their size (64 KiB or more), so uncoloured
// headers would all fall in the same set of every cache level, and a layer of a few hundred
// spans would miss the cache on every header it touches (measured: the header's first load
// was the hottest instruction of Return()).
constexpr size_t kColors = 16;
constexpr size_t kColorBytes = 64;

// Bytes before the first block of a span with `capacity` blocks: the largest colour, header
// and bitmap, rounded to kMaxPooledAlignment so that every block has its class's alignment.
size_t OffsetFor(size_t capacity, size_t header) {
  return RoundUp((kColors - 1) * kColorBytes + header + 8 * ((capacity + 63) / 64),
                 kMaxPooledAlignment);
}

void Poison(void* p, size_t n) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  ASAN_POISON_MEMORY_REGION(p, n);
#else
  static_cast<void>(p);
  static_cast<void>(n);
#endif
}

void Unpoison(void* p, size_t n) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  static_cast<void>(p);
  static_cast<void>(n);
#endif
}

}  // namespace

Spans::Span* Spans::HeaderAt(uintptr_t base, const Geometry& g) {
  return reinterpret_cast<Span*>(base + ((base >> g.span_shift) % kColors) * kColorBytes);
}

char* Spans::BaseOf(const Span* s, size_t span_bytes) {
  return reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(s) & ~(uintptr_t{span_bytes} - 1));
}

void Spans::List::Push(Span* s) {
  s->prev = nullptr;
  s->next = head;
  if (head != nullptr) head->prev = s;
  head = s;
}

void Spans::List::Remove(Span* s) {
  if (s->prev != nullptr) {
    s->prev->next = s->next;
  } else {
    head = s->next;
  }
  if (s->next != nullptr) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
}

Spans::Spans(std::pmr::memory_resource* upstream, size_t num_classes, GiveBackFn give_back,
             void* context, std::string pool)
    : upstream_(upstream),
      give_back_(give_back),
      context_(context),
      pool_(std::move(pool)),
      num_classes_(std::min(num_classes, kNumSpanClasses)),
      num_shards_(std::clamp<size_t>(static_cast<size_t>(NumCpus()), 1, kMaxShards)) {
  for (size_t cls = 0; cls < num_classes_; ++cls) {
    Geometry& g = geometry_[cls];
    g.size = static_cast<uint32_t>(ClassSize(cls));
    g.span_bytes = SpanBytes(cls);
    g.span_shift = static_cast<uint32_t>(std::countr_zero(g.span_bytes));
    size_t capacity = g.span_bytes / g.size;
    while (OffsetFor(capacity, sizeof(Span)) + capacity * g.size > g.span_bytes) --capacity;
    g.capacity = static_cast<uint32_t>(capacity);
    g.words = static_cast<uint32_t>((capacity + 63) / 64);
    g.offset = static_cast<uint32_t>(OffsetFor(capacity, sizeof(Span)));
    g.reciprocal = ((uint64_t{1} << 32) + g.size - 1) / g.size;
  }
}

Spans::~Spans() {
  ReleaseAll();
  for (std::atomic<Shard*>& shard : shards_) delete shard.load(std::memory_order_relaxed);
}

uint64_t Spans::ReleaseAll() {
  // No other thread uses the layer meanwhile (the caller's contract): the locks only keep the
  // analysis and a racing sweep's ReleaseEmpty() honest.
  uint64_t bytes = 0;
  ForEachShard([&](Shard& shard) {
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      Class& c = shard.classes[cls];
      SpinLockHolder l(&c.lock);
      auto free_span = [&](Span* s) {
        FreeSpan(cls, s);
        bytes += geometry_[cls].span_bytes;
      };
      if (c.current != nullptr) free_span(c.current);
      c.current = nullptr;
      for (List* list : {&c.partial, &c.empty[0], &c.empty[1], &c.full}) {
        while (Span* s = list->head) {
          list->Remove(s);
          free_span(s);
        }
      }
      c.spans.store(0, std::memory_order_relaxed);
      c.free_blocks.store(0, std::memory_order_relaxed);
    }
  });
  released_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return bytes;
}

template <typename F>
void Spans::ForEachShard(F f) const {
  for (size_t i = 0; i < num_shards_; ++i) {
    if (Shard* shard = shards_[i].load(std::memory_order_acquire)) f(*shard);
  }
}

uint32_t Spans::ShardIndexOfThisThread() const {
  return static_cast<uint32_t>(static_cast<size_t>(CurrentCpu()) % num_shards_);
}

Spans::Shard& Spans::ShardAt(uint32_t i) {
  if (Shard* shard = shards_[i].load(std::memory_order_acquire)) return *shard;
  SpinLockHolder l(&shards_lock_);
  Shard* shard = shards_[i].load(std::memory_order_relaxed);
  if (shard == nullptr) {
    shard = new Shard;  // May throw: nothing changed.
    shards_[i].store(shard, std::memory_order_release);
  }
  return *shard;
}

uint64_t Spans::TagOf(size_t cls) const {
  return kTagSeed ^ reinterpret_cast<uintptr_t>(this) ^ (uint64_t{cls} << 56);
}

Spans::Span* Spans::NewSpan(size_t cls, uint32_t shard) {
  const Geometry& g = geometry_[cls];
  void* const memory = upstream_->allocate(g.span_bytes, g.span_bytes);  // May throw.
  if ((reinterpret_cast<uintptr_t>(memory) & (g.span_bytes - 1)) != 0) {
    DieOfMisuse(pool_, "the upstream resource returned %p for %zu bytes aligned to %zu: not aligned",
                memory, g.span_bytes, g.span_bytes);
  }
  Span* const s = HeaderAt(reinterpret_cast<uintptr_t>(memory), g);
  s->tag = TagOf(cls);
  s->prev = s->next = nullptr;
  s->free = g.capacity;
  s->hint = 0;
  s->shard = shard;
  s->place = kEmpty;
  s->taken_epoch = epoch_.load(std::memory_order_relaxed);
  for (uint32_t w = 0; w < g.words; ++w) s->bits[w] = ~uint64_t{0};
  if (const uint32_t tail = g.capacity % 64; tail != 0) {
    s->bits[g.words - 1] = (uint64_t{1} << tail) - 1;
  }
  Poison(static_cast<char*>(memory) + g.offset, g.span_bytes - g.offset);
  return s;
}

void Spans::FreeSpan(size_t cls, Span* s) {
  const Geometry& g = geometry_[cls];
  char* const base = BaseOf(s, g.span_bytes);
  Unpoison(base, g.span_bytes);
  s->tag = 0;  // A block of a span gone upstream no longer passes the check, where readable.
  give_back_(context_, base, g.span_bytes, g.span_bytes);
}

size_t Spans::TakeFrom(const Geometry& g, Span* s, void** out, size_t n) {
  char* const first = BaseOf(s, g.span_bytes) + g.offset;
  size_t k = 0;
  for (uint32_t w = s->hint; w < g.words && k < n; ++w) {
    uint64_t bits = s->bits[w];
    while (bits != 0 && k < n) {
      const unsigned bit = static_cast<unsigned>(std::countr_zero(bits));
      bits &= bits - 1;
      out[k++] = first + (size_t{w} * 64 + bit) * g.size;
    }
    s->bits[w] = bits;
    s->hint = bits == 0 ? w + 1 : w;
  }
  s->free -= static_cast<uint32_t>(k);
  return k;
}

Spans::Span* Spans::NextSpan(Class& c) {
  // Partly free spans first, so that wholly free ones can go upstream; of those, the ones
  // used since the previous ReleaseEmpty() first.
  for (List* list : {&c.partial, &c.empty[c.fresh], &c.empty[1 - c.fresh]}) {
    if (Span* s = list->head) {
      list->Remove(s);
      s->place = kCurrent;
      return s;
    }
  }
  return nullptr;
}

// Inlined into Return(), which calls it for every block that comes back to a span other than
// the current one (only this file calls it).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void Spans::Place(Class& c, const Geometry& g, Span* s) {
  uint8_t to = s->free == 0 ? kFull : kPartial;
  if (s->free == g.capacity) {
    const bool used = s->taken_epoch == epoch_.load(std::memory_order_relaxed);
    to = static_cast<uint8_t>(kEmpty + (used ? c.fresh : 1 - c.fresh));
  }
  if (to == s->place) return;
  List* const lists[] = {nullptr, &c.partial, &c.full, &c.empty[0], &c.empty[1]};
  lists[s->place]->Remove(s);
  lists[to]->Push(s);
  s->place = to;
}

size_t Spans::Take(size_t cls, void** out, size_t n) {
  const Geometry& g = geometry_[cls];
  const uint32_t index = ShardIndexOfThisThread();
  Class& c = ShardAt(index).classes[cls];  // May throw: nothing changed.
  size_t k = 0;
  Span* fresh = nullptr;  // A span taken upstream with the lock released.
  while (k < n) {
    {
      SpinLockHolder l(&c.lock);
      if (fresh != nullptr) {
        // Another thread may have set a current span meanwhile: it goes to its list.
        if (c.current != nullptr) {
          c.current->place = kFull;  // As if taken off the full list, then placed.
          c.full.Push(c.current);
          Place(c, g, c.current);
        }
        fresh->place = kCurrent;
        c.current = fresh;
        c.spans.fetch_add(1, std::memory_order_relaxed);
        c.free_blocks.fetch_add(g.capacity, std::memory_order_relaxed);
        fresh = nullptr;
      }
      const size_t before = k;
      while (k < n) {
        Span* s = c.current;
        if (s == nullptr || s->free == 0) {
          if (s != nullptr) {  // Full: on no list until a block comes back.
            s->place = kFull;
            c.full.Push(s);
          }
          s = c.current = NextSpan(c);
          if (s == nullptr) break;
        }
        const size_t taken = TakeFrom(g, s, out + k, n - k);
        s->taken_epoch = epoch_.load(std::memory_order_relaxed);
        c.free_blocks.fetch_sub(taken, std::memory_order_relaxed);
        k += taken;
      }
      // All but the refill's first block; written only under this lock: a relaxed load and
      // store, no read-modify-write.
      if (const size_t refilled = k - before - (before == 0 && k != 0 ? 1 : 0); refilled != 0) {
        c.refilled.store(c.refilled.load(std::memory_order_relaxed) + refilled,
                         std::memory_order_relaxed);
      }
    }
    if (k == n) break;
    // No span has a free block: a new one, with no lock held (upstream may be slow).
    if (k != 0) break;  // The caller has blocks; the next refill takes a span.
    fresh = NewSpan(cls, index);  // Throws with nothing changed.
  }
  for (size_t i = 0; i < k; ++i) Unpoison(out[i], g.size);
  return k;
}

void Spans::NotABlock(void* block, uint32_t size) const {
  DieOfMisuse(pool_,
              "deallocate of %p as a block of %u bytes: it is not one (a pointer this resource "
              "did not hand out, or a size or alignment other than the allocation's)",
              block, size);
}

// The class locks are taken and released as the blocks' shards change (one held at a time):
// beyond what the analysis follows.
void Spans::Return(size_t cls, void* const* blocks, size_t n) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  const Geometry& g = geometry_[cls];
  const uint64_t tag = TagOf(cls);
  for (size_t i = 0; i < n; ++i) Poison(blocks[i], g.size);
  // The class of the shard whose lock is held, and how many blocks came back to it.
  Class* locked = nullptr;
  uint64_t returned = 0;
  auto unlock = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (locked == nullptr) return;
    locked->free_blocks.fetch_add(returned, std::memory_order_relaxed);
    locked->lock.Unlock();
    locked = nullptr;
    returned = 0;
  };
  // The span of the previous block, checked and with its class's lock held: the blocks of a
  // batch mostly come from a few spans, and a span's tag and shard do not change while the
  // layer holds it (a block of it is being returned, and the lock keeps ReleaseEmpty() away).
  uintptr_t checked_base = ~uintptr_t{0};  // No span starts there.
  Span* s = nullptr;
  Class* c = nullptr;
  for (size_t i = 0; i < n; ++i) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(blocks[i]);
    const uintptr_t base = p & ~(uintptr_t{g.span_bytes} - 1);
    const uintptr_t offset = p - base - g.offset;
    const uint64_t index = (uint64_t{offset} * g.reciprocal) >> 32;
    if (base != checked_base) {
      s = HeaderAt(base, g);
      // The tag and shard are constant while the span is the layer's (see spans.h).
      if (s->tag != tag || s->shard >= num_shards_) {
        unlock();
        NotABlock(blocks[i], g.size);
      }
      c = &shards_[s->shard].load(std::memory_order_relaxed)->classes[cls];
      if (c != locked) {
        unlock();
        c->lock.Lock();
        locked = c;
      }
      checked_base = base;
    }
    if (offset >= uint64_t{g.capacity} * g.size || index * g.size != offset) {
      unlock();
      NotABlock(blocks[i], g.size);
    }
    const uint32_t word = static_cast<uint32_t>(index / 64);
    const uint64_t bit = uint64_t{1} << (index % 64);
    if ((s->bits[word] & bit) != 0) {
      unlock();
      DieOfMisuse(pool_, "deallocate of %p, a block of %u bytes that is free already (a second "
                  "deallocate)", blocks[i], g.size);
    }
    s->bits[word] |= bit;
    s->hint = std::min(s->hint, word);
    ++s->free;
    ++returned;
    if (s->place != kCurrent) Place(*c, g, s);
  }
  unlock();
}

uint64_t Spans::ReleaseEmpty(bool everything, SweepPacer* pacer) {
  uint64_t bytes = 0;
  const uint32_t now = epoch_.load(std::memory_order_relaxed);
  ForEachShard([&](Shard& shard) {
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      const Geometry& g = geometry_[cls];
      Class& c = shard.classes[cls];
      // Whole lists, and the current span, off the class under the lock: their spans are this
      // thread's from then on (wholly free, so no Return() reaches them), each chain linked
      // through `next`. The lock is held for a few stores, whatever the lists hold; the spans
      // kept are not visited (see Class::empty).
      Span* chains[3] = {};
      {
        SpinLockHolder l(&c.lock);
        chains[0] = std::exchange(c.empty[1 - c.fresh].head, nullptr);
        if (everything) chains[1] = std::exchange(c.empty[c.fresh].head, nullptr);
        c.fresh = static_cast<uint8_t>(1 - c.fresh);
        // The current span too, wholly free and not taken from since the previous call.
        if (c.current != nullptr && c.current->free == g.capacity &&
            (everything || c.current->taken_epoch != now)) {
          c.current->next = nullptr;
          chains[2] = std::exchange(c.current, nullptr);
        }
      }
      uint64_t count = 0;
      for (Span* s : chains) {
        while (s != nullptr) {
          Span* const next = s->next;
          FreeSpan(cls, s);
          ++count;
          s = next;
          // No lock held (the spans are this thread's); a span's release can cost a system
          // call upstream, and a sweep may release thousands.
          if (pacer != nullptr) pacer->Pause();
        }
      }
      bytes += count * g.span_bytes;
      c.spans.fetch_sub(count, std::memory_order_relaxed);
      c.free_blocks.fetch_sub(count * g.capacity, std::memory_order_relaxed);
    }
  });
  epoch_.fetch_add(1, std::memory_order_relaxed);
  released_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return bytes;
}

Spans::Counts Spans::GetCounts(std::vector<ClassStats>* classes) const {
  Counts counts;
  std::vector<uint64_t> taken(classes != nullptr ? num_classes_ : 0);
  ForEachShard([&](const Shard& shard) {
    for (size_t cls = 0; cls < num_classes_; ++cls) {
      const Class& c = shard.classes[cls];
      const uint64_t spans = c.spans.load(std::memory_order_relaxed);
      const uint64_t free = c.free_blocks.load(std::memory_order_relaxed);
      counts.span_bytes += spans * geometry_[cls].span_bytes;
      counts.block_bytes += spans * geometry_[cls].capacity * geometry_[cls].size;
      counts.free_bytes += free * geometry_[cls].size;
      counts.refilled += c.refilled.load(std::memory_order_relaxed);
      if (classes != nullptr && cls < classes->size()) {
        (*classes)[cls].span_bytes += spans * geometry_[cls].span_bytes;
        (*classes)[cls].span_free_blocks += free;
        const uint64_t blocks = spans * geometry_[cls].capacity;
        taken[cls] += blocks > free ? blocks - free : 0;
      }
    }
  });
  for (size_t cls = 0; cls < taken.size() && cls < classes->size(); ++cls) {
    ClassStats& c = (*classes)[cls];
    c.in_use_blocks = taken[cls] > c.cached_blocks ? taken[cls] - c.cached_blocks : 0;
  }
  counts.released_bytes = released_bytes_.load(std::memory_order_relaxed);
  return counts;
}

// Locks taken here and released in UnlockAfterFork(): beyond what the analysis follows. No
// shard is made while shards_lock_ is held, so the two walks see the same shards.
void Spans::LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  shards_lock_.Lock();
  ForEachShard([this](Shard& shard) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (size_t cls = 0; cls < num_classes_; ++cls) shard.classes[cls].lock.Lock();
  });
}

void Spans::UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ForEachShard([this](Shard& shard) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (size_t cls = num_classes_; cls-- > 0;) shard.classes[cls].lock.Unlock();
  });
  shards_lock_.Unlock();
}

}  // namespace internal
}  // namespace syncpool
