// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A libFuzzer target for PoolResource and Pool<T>, checked step by step against a model.
//
// Each input is a little program. Its first three bytes choose the options of a fresh
// PoolResource (over a TrackingResource, which flags mismatched deallocations) and of a fresh
// Pool<Object>, each with its own manual Sweeper and small capacities, so that spills, the
// shared TransferStack, capacity growth and budgets are reached within a few operations. The bytes after
// them are operations, one opcode byte (modulo kNumOps) followed by its argument bytes (see Op
// below); a program that runs out of bytes reads zeros. Operations: allocate and deallocate of
// many sizes and alignments (through the virtual and the inline API), Get, handle reset,
// release, move and Put, SweepNow (with and without pressure), Trim, Clear, switches of the
// fake CPU, an upstream that fails, invalid alignments, a reset hook that throws, a New that
// returns nullptr, and bursts.
//
// The model holds the live blocks (pointer, size, alignment, and a fill byte written over the
// whole block) and the live objects (handles and released pointers, each stamped). It knows
// PoolResource's two layers behind its caches (src/spans.h): blocks of classes up to 4 KiB
// live in spans (runs of 64 KiB or more, taken from the upstream aligned to their size, one
// class each) and go back to their span when they leave the caches; larger blocks come from
// the upstream one by one and go back there. A probe between the resource and the upstream
// tells spans from other blocks. After every step it checks that:
//   - an allocation is non-null, aligned as asked, overlaps no live block, is writable over
//     its whole size, and lies where the upstream holds it: a direct block or a block above
//     4 KiB is a live upstream block of its size, a block of a span class lies in a live span
//     of its class's span size, past the header, in step with the span's other blocks, and a
//     miss that takes a new span returns its first block; a Get never returns a live object;
//   - a block's pattern, or an object's stamp, is intact when it is given back;
//   - the upstream holds the spans (Stats' span_bytes), the direct blocks, and the blocks
//     above 4 KiB that are in use or cached, nothing else; nothing goes upstream, a span or a
//     block, while a block the model holds lies in it; what is not free in the spans
//     (span_block_bytes - span_free_bytes) is exactly the span classes' blocks in use plus
//     the rest of what Stats says is cached; span_released_bytes is what went back;
//   - every block that entered the caches (misses and refills) has left them (spills, sweeps,
//     budgets, pressure, trims), is cached or is in use; each allocate and deallocate moves
//     blocks of its class only: for a span class, to and from the spans (the upstream sees at
//     most a new span on a miss, nothing goes upstream, no shared move), for a larger class,
//     to and from the upstream (the spans untouched); a direct request calls the upstream
//     once; hits and misses add up to the allocations (Gets) made, and a deallocate (Put)
//     counts no hit (likewise, for the pool, objects made and destroyed);
//   - a sweep releases only what it counts (the bytes the upstream and the spans got back),
//     keeps nothing that was a victim, keeps whatever was given back since the previous sweep
//     (at least one epoch: exactly for blocks above 4 KiB, by count for span classes), leaves
//     nothing after two sweeps in a row (at most two epochs) or a pressure sweep, and keeps
//     the byte budget; after a sweep or Trim() every span left holds a block in use or cached
//     (wholly free spans go upstream at each epoch and drain: after Trim(), every span holds a
//     block in use);
//   - the pool's bytes are what its cached objects own (each Get gives its object an owned
//     size, OwnedBytes<Object>), a Put of an object over max_object_bytes destroys it and
//     counts it as oversized, and a Put keeps the pool's budget;
//   - Trim() and Clear() leave nothing cached; a failed upstream call (a block, or a new span)
//     or an invalid alignment changes nothing; a reset hook that throws destroys its object;
// and at the end of the input, with everything released and the caches destroyed (trimmed
// first, or full, as an option bit says), that the upstream holds nothing (no span either)
// and saw no mismatch and that every object is gone. A violation prints what failed and
// aborts.
//
// Debug checks are off by default (the fuzzer never misuses the API, and they would make the
// caches run in the locked mode only); one option bit turns them on, to check that valid use
// never trips them.
//
// Run it as tests/fuzz/BUILD.bazel says; the seed corpus is tests/fuzz/corpus.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "syncpool/internal/size_class.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"
#include "tests/tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

// Where the current input is, for the message of a violation.
size_t g_step = 0;
int g_op = -1;

[[noreturn]] void Violation(const char* file, int line, const char* what, uint64_t lhs,
                            uint64_t rhs) {
  std::fprintf(stderr,
               "pool_fuzzer: model violation at %s:%d, step %zu (opcode %d): %s "
               "(%llu vs %llu)\n",
               file, line, g_step, g_op, what, static_cast<unsigned long long>(lhs),
               static_cast<unsigned long long>(rhs));
  std::abort();
}

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) ::syncpool::Violation(__FILE__, __LINE__, #cond, 0, 0);            \
  } while (0)

#define FUZZ_CHECK_OP(a, op, b)                                                      \
  do {                                                                               \
    const uint64_t fuzz_lhs = (a);                                                   \
    const uint64_t fuzz_rhs = (b);                                                   \
    if (!(fuzz_lhs op fuzz_rhs)) {                                                   \
      ::syncpool::Violation(__FILE__, __LINE__, #a " " #op " " #b, fuzz_lhs, fuzz_rhs); \
    }                                                                                \
  } while (0)

#define FUZZ_CHECK_EQ(a, b) FUZZ_CHECK_OP(a, ==, b)
#define FUZZ_CHECK_LE(a, b) FUZZ_CHECK_OP(a, <=, b)

// Whether the check named `name` is turned off: POOL_FUZZER_SKIP_CHECKS lists names, comma
// separated, so that a session can look past a known, reported violation for others. Names:
//   at_least_one_epoch: what was given back since the last sweep survives the next one;
//   hits_on_put: a deallocate or Put counts no hit;
//   exact_hits: hits + misses equal the Gets and allocations (within kRestartSlack in the
//     rseq mode).
bool Skipped(const char* name) {
  static const std::string* const skip = [] {
    const char* env = std::getenv("POOL_FUZZER_SKIP_CHECKS");
    return new std::string(env != nullptr ? env : "");
  }();
  return skip->find(name) != std::string::npos;
}

// How many hits one input may count twice in the rseq mode (a pop restarted by preemption,
// migration or a signal after it counted the hit): rare, since the sequences are a few
// instructions, so two per input is ample.
constexpr uint64_t kRestartSlack = 2;

// The input, a byte at a time; zeros once it is exhausted.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t Next() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const uint8_t* const data_;
  const size_t size_;
  size_t pos_ = 0;
};

// The span layer of PoolResource (src/spans.h), as the model knows it: blocks of the classes
// up to kSpanMaxClassSize live in spans of SpanBytesOf(cls) bytes, each taken from the
// upstream with an alignment equal to its size (64 KiB or more: no other upstream request of
// the fuzzer is aligned that much), holding a header (at least kMinSpanHeader bytes) and then
// blocks of one class. Larger classes take their blocks from the upstream one by one.
constexpr size_t kSpanMaxClassSize = 4096;
constexpr size_t kMinSpanBytes = 64 * 1024;
constexpr size_t kMinSpanHeader = 1024;  // Colours, header and bitmap, rounded to 64 bytes.
constexpr size_t kMaxSpanHeader = 2048;  // The same with the largest bitmap (16-byte blocks).

bool IsSpanClass(size_t cls) { return internal::ClassSize(cls) <= kSpanMaxClassSize; }

constexpr size_t SpanBytesOf(size_t cls) {
  const size_t room = std::bit_ceil(internal::ClassSize(cls) * 32);
  return room > kMinSpanBytes ? room : kMinSpanBytes;
}

// Whether an upstream request of `bytes` and `alignment` is a span.
bool IsSpanShape(size_t bytes, size_t alignment) {
  return alignment >= kMinSpanBytes && bytes == alignment;
}

// Forwards to another resource and remembers which blocks it handed out and has not been given
// back (their sizes and alignments, spans apart), so the model can ask whether the resource
// still holds a block, which span a block lies in, and what the resource holds upstream
// besides the blocks the model holds. Counts spans and other blocks separately. Every
// deallocation is checked against the blocks the model holds (extents, set by the harness):
// the resource never gives a block, or a span with a block in it, back while it is in use.
// Single-threaded, as the fuzzer is (its sweepers have no thread).
class LivenessProbe final : public std::pmr::memory_resource {
 public:
  struct Entry {
    size_t bytes;
    size_t alignment;
    // For a span: the class of the blocks the model got from it (-1 until the first), and
    // where its blocks start modulo their size (all blocks of a span are one array).
    int cls = -1;
    size_t phase = 0;
  };

  explicit LivenessProbe(std::pmr::memory_resource* upstream) : upstream_(upstream) {}

  // The model's live blocks, [begin, end) by begin: none may lie in what goes back upstream.
  void set_extents(const std::map<uintptr_t, uintptr_t>* extents) { extents_ = extents; }

  bool IsLive(const void* p) const { return live_.count(reinterpret_cast<uintptr_t>(p)) != 0; }
  const Entry* Find(const void* p) const {
    const auto it = live_.find(reinterpret_cast<uintptr_t>(p));
    return it != live_.end() ? &it->second : nullptr;
  }
  // The live span that holds all of [p, p + n), and its start; nullptr when there is none.
  Entry* SpanOf(const void* p, size_t n, uintptr_t* base) {
    const auto at = reinterpret_cast<uintptr_t>(p);
    auto it = live_.upper_bound(at);
    if (it == live_.begin()) return nullptr;
    --it;
    if (!IsSpanShape(it->second.bytes, it->second.alignment)) return nullptr;
    if (at + n > it->first + it->second.bytes) return nullptr;
    *base = it->first;
    return &it->second;
  }
  const std::map<uintptr_t, Entry>& live() const { return live_; }

  uint64_t span_allocations() const { return span_allocations_; }
  uint64_t span_deallocations() const { return span_deallocations_; }
  uint64_t span_live_bytes() const { return span_live_bytes_; }
  uint64_t span_released_bytes() const { return span_released_bytes_; }
  uint64_t live_spans() const { return span_allocations_ - span_deallocations_; }
  // Blocks other than spans: direct requests and blocks of classes above kSpanMaxClassSize.
  uint64_t other_allocations() const { return other_allocations_; }
  uint64_t other_deallocations() const { return other_deallocations_; }
  uint64_t other_released_bytes() const { return other_released_bytes_; }
  uintptr_t last_span() const { return last_span_; }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    void* p = upstream_->allocate(bytes, alignment);
    const auto at = reinterpret_cast<uintptr_t>(p);
    FUZZ_CHECK(live_.count(at) == 0);
    live_.emplace(at, Entry{bytes, alignment});
    if (IsSpanShape(bytes, alignment)) {
      // A span: of one of the sizes spans have, aligned to it.
      FUZZ_CHECK(bytes == kMinSpanBytes || bytes == 2 * kMinSpanBytes);
      FUZZ_CHECK_EQ(at % alignment, 0);
      ++span_allocations_;
      span_live_bytes_ += bytes;
      last_span_ = at;
    } else {
      ++other_allocations_;
    }
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    const auto at = reinterpret_cast<uintptr_t>(p);
    const auto it = live_.find(at);
    FUZZ_CHECK(it != live_.end());
    FUZZ_CHECK_EQ(it->second.bytes, bytes);
    FUZZ_CHECK_EQ(it->second.alignment, alignment);
    if (extents_ != nullptr) {
      // No block the model holds lies in what goes back.
      auto next = extents_->lower_bound(at);
      if (next != extents_->end()) FUZZ_CHECK_LE(at + bytes, next->first);
      if (next != extents_->begin()) FUZZ_CHECK_LE(std::prev(next)->second, at);
    }
    if (IsSpanShape(bytes, alignment)) {
      ++span_deallocations_;
      span_live_bytes_ -= bytes;
      span_released_bytes_ += bytes;
    } else {
      ++other_deallocations_;
      other_released_bytes_ += bytes;
    }
    live_.erase(it);
    upstream_->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::pmr::memory_resource* const upstream_;
  const std::map<uintptr_t, uintptr_t>* extents_ = nullptr;
  std::map<uintptr_t, Entry> live_;
  uint64_t span_allocations_ = 0;
  uint64_t span_deallocations_ = 0;
  uint64_t span_live_bytes_ = 0;
  uint64_t span_released_bytes_ = 0;
  uint64_t other_allocations_ = 0;
  uint64_t other_deallocations_ = 0;
  uint64_t other_released_bytes_ = 0;
  uintptr_t last_span_ = 0;
};

// The pooled type: a state word and stamps that tell who wrote it last. Every object alive is
// in Live(), so the model can tell whether the pool still caches an object it was given.
class Object {
 public:
  enum State : uint64_t {
    kFresh = 0x4672657368,   // Made by New, never handed out.
    kHeld = 0x48656c64,      // Held by the model, stamped.
    kPooled = 0x506f6f6c6564,  // Given back: the reset hook ran.
  };

  Object() { Live().insert(this); }
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;
  ~Object() {
    Live().erase(this);
    ++destroyed_;
  }

  static std::unordered_set<const Object*>& Live() {
    static auto* const live = new std::unordered_set<const Object*>();
    return *live;
  }
  static uint64_t destroyed() { return destroyed_; }

  void Stamp(uint64_t serial) {
    state = kHeld;
    for (size_t i = 0; i < kStamps; ++i) stamp[i] = serial * 0x9E3779B97F4A7C15u + i;
  }
  bool StampIntact() const {
    for (size_t i = 1; i < kStamps; ++i) {
      if (stamp[i] != stamp[0] + i) return false;
    }
    return true;
  }

  uint64_t state = kFresh;
  // What the object says it owns beyond sizeof(Object) (OwnedBytes<Object>, below): the model
  // sets it whenever it gets the object, so the pool counts objects of many sizes.
  uint64_t extra = 0;

 private:
  static constexpr size_t kStamps = 7;
  static inline uint64_t destroyed_ = 0;
  uint64_t stamp[kStamps] = {};
};

}  // namespace

template <>
struct OwnedBytes<Object> {
  static size_t Of(const Object& o) { return sizeof(Object) + o.extra; }
};

namespace {

// What a Get gives its object to own, by the object's serial.
constexpr uint64_t kExtras[8] = {0, 0, 16, 64, 100, 1000, 4096, 65536};

// Thrown by the reset hook when the model asks it to.
struct ResetError {};

// Alignments of allocate requests: pooled ones (up to 64), over-aligned ones (upstream).
constexpr size_t kAlignments[16] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 4096, 16, 16, 8, 64, 32, 1};
// Alignments that are not powers of two: allocate must throw std::invalid_argument.
constexpr size_t kBadAlignments[8] = {0, 3, 6, 24, 48, 96, 1000, 65537};

// Bounds on what one input holds, so that an input cannot exhaust memory: blocks (enough to
// fill a few spans of the largest span classes, 31 blocks each) and the bytes of their
// requests.
constexpr size_t kMaxBlocks = 160;
constexpr size_t kMaxLiveBytes = 16 << 20;
constexpr size_t kMaxObjects = 64;
constexpr size_t kMaxBurst = 40;

// The opcodes: the byte modulo kNumOps. Arguments, one byte each, follow the opcode.
enum Op : int {
  kAllocate,           // size mode, size value, alignment: allocate()
  kAllocateInline,     // size mode, size value, alignment: Allocate()
  kDeallocate,         // index: deallocate()
  kDeallocateInline,   // index: Deallocate()
  kGet,                // Get(), New allowed
  kResetHandle,        // index, how (bit 0: reset(), else destroy the handle)
  kReleaseHandle,      // index: Handle::release()
  kPutReleased,        // index: Put(unique_ptr) of a released object, Put(nullptr) when none
  kDeleteReleased,     // index: a released object destroyed outside the pool
  kMoveHandle,         // target, source, how (bit 0: move-construct, else move-assign)
  kSweep,              // which (0 resource, 1 pool, 2 both) + 4 * pressure
  kTrim,               // PoolResource::Trim()
  kClear,              // Pool::Clear()
  kSetCpu,             // CPU: a fake CPU id, or (value NumCpus) the real CPU
  kFailingAllocate,    // size mode, size value, alignment: the upstream's next call throws
  kBadAlignment,       // size value, alignment index, API (bit 0: inline)
  kThrowingReset,      // Put(unique_ptr) whose reset hook throws
  kGetWithoutNew,      // Get() with a New that returns nullptr
  kBurst,              // count, size mode, size value, alignment: allocate count, free all
  kPoolBurst,          // count: Get count objects, then put them all back
  kNumOps,
};

// Whether the `n` bytes at `p` all read `fill`.
bool PatternIntact(const unsigned char* p, size_t n, unsigned char fill) {
  unsigned char expected[4096];
  std::memset(expected, fill, sizeof(expected));
  for (size_t at = 0; at < n; at += sizeof(expected)) {
    if (std::memcmp(p + at, expected, std::min(sizeof(expected), n - at)) != 0) return false;
  }
  return true;
}

// What the counters of one sweep may do (both caches follow the same policy).
//   quiet_sweeps: sweeps of this cache in a row with no operation on it between them, this one
//   included; registered: whether the cache has joined its sweeper (it then counts the epoch).
void CheckSweep(const Stats& before, const Stats& after, bool pressure, int quiet_sweeps,
                bool registered, size_t budget) {
  FUZZ_CHECK_EQ(after.hits, before.hits);
  FUZZ_CHECK_EQ(after.misses, before.misses);
  FUZZ_CHECK_EQ(after.spills, before.spills);
  FUZZ_CHECK_LE(after.cached_blocks(), before.cached_blocks());
  if (registered) {
    FUZZ_CHECK_EQ(after.epochs, before.epochs + 1);
  } else {
    FUZZ_CHECK_LE(after.epochs, before.epochs + 1);
  }
  const uint64_t left = before.cached_blocks() - after.cached_blocks();
  const uint64_t left_bytes = before.cached_bytes() - after.cached_bytes();
  if (pressure) {
    // Everything goes, counted as pressure.
    FUZZ_CHECK_EQ(after.cached_blocks(), 0);
    FUZZ_CHECK_EQ(after.cached_bytes(), 0);
    FUZZ_CHECK_EQ(after.pressure_blocks - before.pressure_blocks, left);
    FUZZ_CHECK_EQ(after.pressure_bytes - before.pressure_bytes, left_bytes);
    FUZZ_CHECK_EQ(after.swept_blocks, before.swept_blocks);
    FUZZ_CHECK_EQ(after.over_budget_blocks, before.over_budget_blocks);
  } else {
    // Victims go and primaries are kept or demoted: nothing that was a victim stays.
    FUZZ_CHECK_LE(after.cached_blocks(), before.primary_blocks);
    FUZZ_CHECK_EQ((after.swept_blocks - before.swept_blocks) +
                      (after.over_budget_blocks - before.over_budget_blocks),
                  left);
    FUZZ_CHECK_EQ((after.swept_bytes - before.swept_bytes) +
                      (after.over_budget_bytes - before.over_budget_bytes),
                  left_bytes);
    FUZZ_CHECK_EQ(after.pressure_blocks, before.pressure_blocks);
    // At most two epochs: a second sweep with nothing in between leaves nothing.
    if (quiet_sweeps >= 2) FUZZ_CHECK_EQ(after.cached_blocks(), 0);
  }
  if (budget != 0) FUZZ_CHECK_LE(after.cached_bytes(), budget);
}

class Harness {
 public:
  // Reads the options from the first three bytes:
  //   flags:   bit 0 resource retention kVictim (else kWorkingSet), bit 1 allow_rseq = false,
  //            bit 2 debug_checks, bit 3 pool retention kVictim, bits 4-5 max_block_size
  //            (kMaxBlockSizes), bits 6-7 discard_min_bytes (kDiscardMin);
  //   caps:    bits 0-2 resource blocks per class - 1, bits 3-4 per_cpu_class_bytes
  //            (kClassBytes) and the pool's max_object_bytes (kMaxObjectBytes), bits 5-7 pool
  //            objects per class - 1;
  //   budgets: bits 0-2 resource max_cached_bytes (kResourceBudgets), bits 3-5 pool
  //            max_cached_bytes (kPoolBudgets), bit 6 destroy the caches full at the end,
  //            bit 7 growth: the caches start at those blocks (objects) per class and grow to
  //            kGrowth times as many (else they start at their maximum and never grow).
  // Both caches' per_cpu_bytes (the bound on one CPU's capacities) follows caps bits 0-1
  // (kCpuBytes): sometimes none, sometimes below what the caches start with (no growth at all),
  // sometimes in between. The resource's refill_bytes follows caps bits 5-6 (kRefillBytes): the
  // default, none (one block per miss), the most (64 blocks of every class up to 1 KiB, 32 of
  // 2 KiB), and less than most classes.
  // The model needs nothing else for growth: capacities only decide whether a block stays
  // cached, moves to the shared layer or spills, and every check is on what Stats and the
  // upstream say happened.
  explicit Harness(ByteReader& in) : in_(in) {
    const uint8_t flags = in_.Next();
    const uint8_t caps = in_.Next();
    const uint8_t budgets = in_.Next();

    constexpr size_t kMaxBlockSizes[4] = {256 << 10, 4096, 1000, 64 << 10};
    constexpr size_t kDiscardMin[4] = {0, 4096, 16 << 10, 1};
    constexpr size_t kClassBytes[4] = {64 << 10, 4096, 256, 0};
    constexpr size_t kResourceBudgets[8] = {0, 0, 0, 0, 1 << 10, 8 << 10, 64 << 10, 1 << 20};
    constexpr size_t kPoolBudgets[8] = {0, 0, 0, 0, 1, 4, 16, 256};  // In bare objects.
    constexpr size_t kMaxObjectBytes[4] = {0, sizeof(Object) + 64, sizeof(Object) + 4096, 0};
    constexpr size_t kCpuBytes[4] = {0, 4096, 64 << 10, 32 << 20};
    constexpr size_t kRefillBytes[4] = {4096, 0, 64 << 10, 100};
    constexpr uint32_t kGrowth = 16;
    const uint32_t growth = (budgets & 0x80) != 0 ? kGrowth : 1;

    Options r;
    r.name = "pool_fuzzer resource";
    r.sweeper = &resource_sweeper_;
    r.retention = (flags & 1) != 0 ? Retention::kVictim : Retention::kWorkingSet;
    r.allow_rseq = (flags & 2) == 0;
    r.debug_checks = (flags & 4) != 0;
    r.max_block_size = kMaxBlockSizes[(flags >> 4) & 3];
    r.discard_min_bytes = kDiscardMin[(flags >> 6) & 3];
    r.initial_blocks_per_class = 1 + (caps & 7);
    r.max_blocks_per_class = r.initial_blocks_per_class * growth;
    r.per_cpu_class_bytes = kClassBytes[(caps >> 3) & 3];
    r.per_cpu_bytes = kCpuBytes[caps & 3];
    r.refill_bytes = kRefillBytes[(caps >> 5) & 3];
    r.max_cached_bytes = kResourceBudgets[budgets & 7];
    resource_budget_ = r.max_cached_bytes;

    Options p;
    p.name = "pool_fuzzer pool";
    p.sweeper = &pool_sweeper_;
    p.retention = (flags & 8) != 0 ? Retention::kVictim : Retention::kWorkingSet;
    p.allow_rseq = r.allow_rseq;
    p.debug_checks = r.debug_checks;
    p.initial_blocks_per_class = 1 + ((caps >> 5) & 7);
    p.max_blocks_per_class = p.initial_blocks_per_class * growth;
    p.per_cpu_bytes = r.per_cpu_bytes;
    p.max_cached_bytes = kPoolBudgets[(budgets >> 3) & 7] * sizeof(Object);
    pool_budget_ = p.max_cached_bytes;
    p.max_object_bytes = kMaxObjectBytes[(caps >> 3) & 3];
    max_object_bytes_ = p.max_object_bytes;

    destroy_full_ = (budgets & 0x40) != 0;
    cpus_ = std::min(ScopedFakeCpu::NumCpus(), 4);
    objects_at_start_ = Object::Live().size();
    objects_at_start_set_ = Object::Live();
    destroyed_at_start_ = Object::destroyed();

    probe_.set_extents(&extents_);
    resource_.emplace(r, &probe_);
    pool_.emplace([this] { return New(); }, [this](Object& o) { Reset(o); }, p);
  }

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void Run() {
    CheckInvariants();
    while (!in_.done()) {
      ++g_step;
      g_op = in_.Next() % kNumOps;
      Step(static_cast<Op>(g_op));
      CheckInvariants();
    }
    g_op = -1;
    Finish();
  }

 private:
  struct Block {
    unsigned char* p;
    size_t bytes;
    size_t alignment;
    size_t upstream_bytes;  // The class size, or `bytes` for a direct request.
    int cls;                // The class, or -1 for a direct request.
    unsigned char fill;
  };

  void Step(Op op) {
    switch (op) {
      case kAllocate:
      case kAllocateInline: {
        const uint8_t mode = in_.Next();
        const uint8_t value = in_.Next();
        const uint8_t align = in_.Next();
        Allocate(DecodeSize(mode, value), kAlignments[align % 16], op == kAllocateInline);
        break;
      }
      case kDeallocate:
      case kDeallocateInline:
        Deallocate(in_.Next(), op == kDeallocateInline);
        break;
      case kGet:
        Get(/*allow_new=*/true);
        break;
      case kResetHandle: {
        const uint8_t index = in_.Next();
        ResetHandle(index, (in_.Next() & 1) != 0);
        break;
      }
      case kReleaseHandle:
        ReleaseHandle(in_.Next());
        break;
      case kPutReleased:
        PutReleased(in_.Next());
        break;
      case kDeleteReleased:
        DeleteReleased(in_.Next());
        break;
      case kMoveHandle: {
        const uint8_t target = in_.Next();
        const uint8_t source = in_.Next();
        MoveHandle(target, source, (in_.Next() & 1) != 0);
        break;
      }
      case kSweep: {
        const uint8_t arg = in_.Next();
        const bool pressure = (arg & 4) != 0;
        if (arg % 3 != 1) SweepResource(pressure);
        if (arg % 3 != 0) SweepPool(pressure);
        break;
      }
      case kTrim:
        Trim();
        break;
      case kClear:
        Clear();
        break;
      case kSetCpu: {
        const int cpu = in_.Next() % (cpus_ + 1);
        fake_cpu_.reset();
        if (cpu < cpus_) fake_cpu_.emplace(cpu);
        break;
      }
      case kFailingAllocate: {
        const uint8_t mode = in_.Next();
        const uint8_t value = in_.Next();
        const uint8_t align = in_.Next();
        FailingAllocate(DecodeSize(mode, value), kAlignments[align % 16]);
        break;
      }
      case kBadAlignment: {
        const uint8_t value = in_.Next();
        const uint8_t align = in_.Next();
        BadAlignment(value, kBadAlignments[align % 8], (in_.Next() & 1) != 0);
        break;
      }
      case kThrowingReset:
        ThrowingReset();
        break;
      case kGetWithoutNew:
        Get(/*allow_new=*/false);
        break;
      case kBurst: {
        const size_t count = 1 + in_.Next() % kMaxBurst;
        const uint8_t mode = in_.Next();
        const uint8_t value = in_.Next();
        const uint8_t align = in_.Next();
        Burst(count, DecodeSize(mode, value), kAlignments[align % 16]);
        break;
      }
      case kPoolBurst:
        PoolBurst(1 + in_.Next() % kMaxBurst);
        break;
      case kNumOps:
        break;
    }
  }

  // A request size from two bytes: small, medium, large, around max_block_size, around a
  // class boundary, zero, or a power of two up to 1 MiB.
  size_t DecodeSize(uint8_t mode, uint8_t value) const {
    switch (mode % 8) {
      case 0:
        return value % 33;
      case 1:
        return value;
      case 2:
        return size_t{value} * 16 + (mode >> 3);
      case 3: {
        const size_t around = resource_->max_block_size() + value % 33;
        return around >= 16 ? around - 16 : 0;
      }
      case 4:
        return internal::ClassSize(value % internal::kNumSizeClasses) + (mode >> 3) % 3 - 1;
      case 5:
        return size_t{value} * 1024 + (mode >> 3);
      case 6:
        return 0;
      default:
        return size_t{1} << (value % 21);
    }
  }

  bool IsDirect(size_t bytes, size_t alignment) const {
    return bytes > resource_->max_block_size() || alignment > kMaxPooledAlignment;
  }

  // PoolResource ------------------------------------------------------------------------------

  // What the resource and its upstream have counted, at one instant: Stats, the upstream's
  // calls (spans apart), and the model's own counts that the identities below use.
  struct Ledger {
    Stats stats;
    uint64_t allocations = 0;    // The upstream's, all of them.
    uint64_t deallocations = 0;
    uint64_t span_allocations = 0;
    uint64_t span_deallocations = 0;
    uint64_t span_released_bytes = 0;   // The probe's count of span bytes gone upstream.
    uint64_t other_released_bytes = 0;  // The same for every other upstream block.
    uint64_t failed_misses = 0;
    // Blocks of span classes that have left the caches so far (to their spans): every block
    // that left, less those the upstream got back (blocks above kSpanMaxClassSize).
    uint64_t span_blocks_left = 0;
  };

  Ledger Snapshot() const {
    Ledger l;
    l.stats = resource_->GetStats();
    l.allocations = upstream_.allocations();
    l.deallocations = upstream_.deallocations();
    l.span_allocations = probe_.span_allocations();
    l.span_deallocations = probe_.span_deallocations();
    l.span_released_bytes = probe_.span_released_bytes();
    l.other_released_bytes = probe_.other_released_bytes();
    l.failed_misses = failed_misses_;
    const Stats& s = l.stats;
    const uint64_t left =
        s.spills + s.swept_blocks + s.over_budget_blocks + s.pressure_blocks + trimmed_;
    const uint64_t big_left = probe_.other_deallocations() - direct_deallocations_;
    FUZZ_CHECK_LE(big_left, left);
    l.span_blocks_left = left - big_left;
    return l;
  }

  // Bytes of the span classes' blocks that are cached or in use: what the spans say is not
  // free (signed, for differences).
  static int64_t SpanUsed(const Stats& s) {
    return static_cast<int64_t>(s.span_block_bytes) - static_cast<int64_t>(s.span_free_bytes);
  }

  // Checks what one allocate (`allocated`) or deallocate of a block did, by its class (`cls`,
  // or -1 for a direct request). Whatever entered or left the caches in the call was of that
  // class: a span class takes its blocks from the spans and gives them back there (the
  // upstream sees at most a new span, on an allocation, and nothing goes upstream outside
  // epochs and drains; no TransferStack); a larger class takes them from the upstream and
  // gives them back there (the spans untouched); a direct request only calls the upstream.
  void CheckClassOp(const Ledger& before, const Ledger& after, int cls, bool allocated) {
    const Stats& b = before.stats;
    const Stats& a = after.stats;
    const uint64_t in = (a.misses - b.misses) + (a.refilled - b.refilled) -
                        (after.failed_misses - before.failed_misses);
    const uint64_t out = (a.spills - b.spills) + (a.over_budget_blocks - b.over_budget_blocks);
    // No epoch or drain in a call: nothing swept, and no span goes upstream.
    FUZZ_CHECK_EQ(a.swept_blocks, b.swept_blocks);
    FUZZ_CHECK_EQ(a.pressure_blocks, b.pressure_blocks);
    FUZZ_CHECK_EQ(a.epochs, b.epochs);
    FUZZ_CHECK_EQ(a.span_released_bytes, b.span_released_bytes);
    FUZZ_CHECK_EQ(after.span_deallocations, before.span_deallocations);
    if (!allocated) {
      FUZZ_CHECK_EQ(a.misses, b.misses);
      FUZZ_CHECK_EQ(a.refilled, b.refilled);
    }
    if (cls < 0 || !IsSpanClass(static_cast<size_t>(cls))) {
      // The spans are untouched.
      FUZZ_CHECK_EQ(after.span_allocations, before.span_allocations);
      FUZZ_CHECK_EQ(a.span_bytes, b.span_bytes);
      FUZZ_CHECK_EQ(a.span_block_bytes, b.span_block_bytes);
      FUZZ_CHECK_EQ(a.span_free_bytes, b.span_free_bytes);
    }
    if (cls < 0) {  // Direct: one upstream call, nothing else.
      FUZZ_CHECK_EQ(after.allocations - before.allocations, allocated ? 1 : 0);
      FUZZ_CHECK_EQ(after.deallocations - before.deallocations, allocated ? 0 : 1);
      FUZZ_CHECK_EQ(a.direct - b.direct, allocated ? 1 : 0);
      FUZZ_CHECK_EQ(in, 0);
      FUZZ_CHECK_EQ(out, 0);
      FUZZ_CHECK_EQ(a.cached_blocks(), b.cached_blocks());
      return;
    }
    FUZZ_CHECK_EQ(a.direct, b.direct);
    const size_t size = internal::ClassSize(static_cast<size_t>(cls));
    if (IsSpanClass(static_cast<size_t>(cls))) {
      FUZZ_CHECK_EQ(after.deallocations, before.deallocations);
      const uint64_t new_spans = after.span_allocations - before.span_allocations;
      FUZZ_CHECK_EQ(after.allocations - before.allocations, new_spans);
      FUZZ_CHECK_LE(new_spans, allocated ? 1 : 0);
      FUZZ_CHECK_EQ(a.span_bytes - b.span_bytes,
                    new_spans * SpanBytesOf(static_cast<size_t>(cls)));
      FUZZ_CHECK_EQ(a.shared_moves, b.shared_moves);  // No TransferStack for span classes.
      // The blocks taken from the spans and given back to them, of this class's size.
      FUZZ_CHECK_EQ(SpanUsed(a) - SpanUsed(b),
                    (static_cast<int64_t>(in) - static_cast<int64_t>(out)) *
                        static_cast<int64_t>(size));
    } else {
      FUZZ_CHECK_EQ(after.allocations - before.allocations, in);
      FUZZ_CHECK_EQ(after.deallocations - before.deallocations, out);
      FUZZ_CHECK_EQ(after.other_released_bytes - before.other_released_bytes, out * size);
    }
  }

  // Checks what a sweep or a drain did: nothing entered the caches or came from upstream, the
  // `left_bytes` that left the caches are the blocks above kSpanMaxClassSize the upstream got
  // back plus the blocks the spans got back, and spans went upstream only whole (the probe
  // checks that none held a block in use), as Stats counts them.
  void CheckReleaseOp(const Ledger& before, const Ledger& after, uint64_t left_bytes) {
    const Stats& b = before.stats;
    const Stats& a = after.stats;
    FUZZ_CHECK_EQ(a.misses, b.misses);
    FUZZ_CHECK_EQ(a.refilled, b.refilled);
    FUZZ_CHECK_EQ(a.direct, b.direct);
    FUZZ_CHECK_EQ(after.allocations, before.allocations);
    FUZZ_CHECK_LE(SpanUsed(a), SpanUsed(b));
    FUZZ_CHECK_EQ(left_bytes, (after.other_released_bytes - before.other_released_bytes) +
                                  static_cast<uint64_t>(SpanUsed(b) - SpanUsed(a)));
    FUZZ_CHECK_EQ(a.span_released_bytes - b.span_released_bytes,
                  after.span_released_bytes - before.span_released_bytes);
    FUZZ_CHECK_LE(a.span_bytes, b.span_bytes);
    FUZZ_CHECK_EQ(b.span_bytes - a.span_bytes, a.span_released_bytes - b.span_released_bytes);
  }

  // What the resource holds, as the model and the probe see it.
  struct Held {
    uint64_t direct_blocks = 0;  // In use (the model's), by layer.
    uint64_t direct_bytes = 0;
    uint64_t big_blocks = 0;  // Classes above kSpanMaxClassSize.
    uint64_t big_bytes = 0;
    uint64_t span_blocks = 0;  // Span classes (class sizes).
    uint64_t span_bytes = 0;
    // Cached blocks above kSpanMaxClassSize: the upstream blocks that are neither spans nor
    // the model's, each of a class size.
    uint64_t big_cached_blocks = 0;
    uint64_t big_cached_bytes = 0;
    // The cached blocks of span classes: the rest of what Stats says is cached.
    uint64_t span_cached_blocks = 0;
    uint64_t span_cached_bytes = 0;
    // The spans that hold a block the model holds, by start.
    std::unordered_set<uintptr_t> spans_in_use;
  };

  Held ResourceHeld(const Stats& r) {
    Held h;
    for (const Block& b : blocks_) {
      if (b.cls < 0) {
        ++h.direct_blocks;
        h.direct_bytes += b.upstream_bytes;
      } else if (IsSpanClass(static_cast<size_t>(b.cls))) {
        ++h.span_blocks;
        h.span_bytes += b.upstream_bytes;
        uintptr_t base = 0;
        FUZZ_CHECK(probe_.SpanOf(b.p, b.upstream_bytes, &base) != nullptr);
        h.spans_in_use.insert(base);
      } else {
        ++h.big_blocks;
        h.big_bytes += b.upstream_bytes;
      }
    }
    for (const auto& [at, e] : probe_.live()) {
      if (IsSpanShape(e.bytes, e.alignment) || extents_.count(at) != 0) continue;
      // Neither a span nor a block in use: a cached block of a class above kSpanMaxClassSize
      // that this resource serves, with its class's size and alignment.
      FUZZ_CHECK_LE(e.bytes, internal::kMaxClassSize);
      const size_t cls = internal::SizeClassOf(e.bytes);
      FUZZ_CHECK_EQ(internal::ClassSize(cls), e.bytes);
      FUZZ_CHECK(!IsSpanClass(cls));
      FUZZ_CHECK_LE(e.bytes, internal::ClassSize(internal::SizeClassOf(internal::PooledSize(
                                 resource_->max_block_size(), kMaxPooledAlignment))));
      FUZZ_CHECK_EQ(e.alignment, internal::ClassAlignment(cls));
      ++h.big_cached_blocks;
      h.big_cached_bytes += e.bytes;
    }
    FUZZ_CHECK_LE(h.big_cached_blocks, r.cached_blocks());
    FUZZ_CHECK_LE(h.big_cached_bytes, r.cached_bytes());
    h.span_cached_blocks = r.cached_blocks() - h.big_cached_blocks;
    h.span_cached_bytes = r.cached_bytes() - h.big_cached_bytes;
    return h;
  }

  // After a drain, a pressure sweep or the second of two quiet sweeps: every span the
  // resource still holds has a block in it that is in use or cached (a wholly free span goes
  // upstream at a drain, and at the end of an epoch unless a block was taken from it since
  // the previous one).
  // The model sees which spans hold its blocks; each of the others needs a cached block of
  // its own, of its class. So after a drain, a pressure sweep or two quiet sweeps (nothing
  // cached) every span holds a block in use, and none is left when none is in use.
  void CheckNoIdleSpans(const Stats& r) {
    const Held h = ResourceHeld(r);
    uint64_t idle = 0;
    uint64_t idle_bytes = 0;
    for (const auto& [at, e] : probe_.live()) {
      if (!IsSpanShape(e.bytes, e.alignment) || h.spans_in_use.count(at) != 0) continue;
      FUZZ_CHECK(e.cls >= 0);
      ++idle;
      idle_bytes += internal::ClassSize(static_cast<size_t>(e.cls));
    }
    FUZZ_CHECK_LE(idle, h.span_cached_blocks);
    FUZZ_CHECK_LE(idle_bytes, h.span_cached_bytes);
    if (h.span_blocks == 0 && h.span_cached_blocks == 0) FUZZ_CHECK_EQ(r.span_bytes, 0);
  }

  // Whether an allocation of `bytes` would take the model past its bounds.
  bool Full(size_t bytes) const {
    return blocks_.size() >= kMaxBlocks || live_request_bytes_ + bytes > kMaxLiveBytes;
  }

  void Allocate(size_t bytes, size_t alignment, bool inline_api) {
    if (Full(bytes)) {
      Deallocate(static_cast<uint8_t>(bytes), inline_api);
      return;
    }
    const Ledger before = Snapshot();
    void* p = inline_api ? resource_->Allocate(bytes, alignment)
                         : resource_->allocate(bytes, alignment);
    Record(p, bytes, alignment, before);
  }

  // Checks a block just allocated (`before`: the ledger before the call) and adds it to the
  // model.
  void Record(void* p, size_t bytes, size_t alignment, const Ledger& before) {
    const bool direct = IsDirect(bytes, alignment);
    const int cls = direct ? -1 : static_cast<int>(internal::RequestClass(bytes, alignment));
    FUZZ_CHECK(p != nullptr);
    const auto at = reinterpret_cast<uintptr_t>(p);
    FUZZ_CHECK_EQ(at % alignment, 0);
    const Ledger after = Snapshot();
    CheckClassOp(before, after, cls, /*allocated=*/true);
    const size_t upstream_bytes = direct ? bytes : internal::ClassSize(static_cast<size_t>(cls));
    // A block the resource released must never come back: a direct block, or a block of a
    // class above kSpanMaxClassSize, starts a live upstream block of its size; a block of a
    // span class lies in a live span of its class's span size, past the span's header, in the
    // span's array of blocks of that one class.
    if (direct || !IsSpanClass(static_cast<size_t>(cls))) {
      const LivenessProbe::Entry* e = probe_.Find(p);
      FUZZ_CHECK(e != nullptr);
      FUZZ_CHECK_EQ(e->bytes, upstream_bytes);
      FUZZ_CHECK_EQ(e->alignment,
                    direct ? alignment : internal::ClassAlignment(static_cast<size_t>(cls)));
    } else {
      uintptr_t base = 0;
      LivenessProbe::Entry* span = probe_.SpanOf(p, upstream_bytes, &base);
      FUZZ_CHECK(span != nullptr);
      FUZZ_CHECK_EQ(span->bytes, SpanBytesOf(static_cast<size_t>(cls)));
      const uintptr_t offset = at - base;
      FUZZ_CHECK_LE(kMinSpanHeader, offset);
      if (after.span_allocations != before.span_allocations) {
        // A new span for this allocation: its first block, the lowest, is the one returned.
        FUZZ_CHECK_EQ(base, probe_.last_span());
        FUZZ_CHECK_EQ(span->cls, -1);
        FUZZ_CHECK_LE(offset, kMaxSpanHeader);
      }
      if (span->cls < 0) {
        span->cls = cls;
        span->phase = offset % upstream_bytes;
      } else {
        FUZZ_CHECK_EQ(span->cls, cls);
        FUZZ_CHECK_EQ(offset % upstream_bytes, span->phase);
      }
    }
    // No overlap with any live block (a zero-byte block still takes a distinct address).
    const uintptr_t end = at + std::max<size_t>(bytes, 1);
    auto next = extents_.lower_bound(at);
    if (next != extents_.end()) FUZZ_CHECK_LE(end, next->first);
    if (next != extents_.begin()) FUZZ_CHECK_LE(std::prev(next)->second, at);
    extents_.emplace(at, end);
    const auto fill = static_cast<unsigned char>(1 + serial_++ % 255);
    std::memset(p, fill, bytes);  // Writable over its whole size (ASan checks the bounds).
    blocks_.push_back(Block{static_cast<unsigned char*>(p), bytes, alignment, upstream_bytes,
                            cls, fill});
    live_request_bytes_ += bytes;
    if (direct) {
      ++direct_allocations_;
    } else {
      ++pooled_allocations_;
      ResourceUsed();
      put_since_resource_epoch_.erase(p);
      span_put_since_resource_epoch_.erase(p);
    }
  }

  void Deallocate(uint8_t index, bool inline_api) {
    if (blocks_.empty()) return;
    const size_t i = index % blocks_.size();
    const Block b = blocks_[i];
    FUZZ_CHECK(PatternIntact(b.p, b.bytes, b.fill));
    extents_.erase(reinterpret_cast<uintptr_t>(b.p));
    blocks_[i] = blocks_.back();
    blocks_.pop_back();
    live_request_bytes_ -= b.bytes;
    const Ledger before = Snapshot();
    if (inline_api) {
      resource_->Deallocate(b.p, b.bytes, b.alignment);
    } else {
      resource_->deallocate(b.p, b.bytes, b.alignment);
    }
    if (b.cls < 0) ++direct_deallocations_;
    const Ledger after = Snapshot();
    // Whatever left the caches was counted (a spill, or over the budget) and went to the
    // spans or upstream by its class.
    CheckClassOp(before, after, b.cls, /*allocated=*/false);
    if (b.cls < 0) {
      FUZZ_CHECK(!probe_.IsLive(b.p));  // Straight back upstream.
      return;
    }
    ResourceUsed();
    if (!Skipped("hits_on_put")) FUZZ_CHECK_EQ(after.stats.hits, before.stats.hits);
    if (IsSpanClass(static_cast<size_t>(b.cls))) {
      span_put_since_resource_epoch_.insert(b.p);
    } else if (probe_.IsLive(b.p)) {
      put_since_resource_epoch_.insert(b.p);
    }
  }

  void FailingAllocate(size_t bytes, size_t alignment) {
    if (Full(bytes)) {
      Deallocate(static_cast<uint8_t>(bytes), false);
      return;
    }
    const Ledger before = Snapshot();
    const size_t live_before = upstream_.live_blocks();
    upstream_.FailAfter(0);
    void* p = nullptr;
    bool threw = false;
    try {
      p = resource_->allocate(bytes, alignment);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    upstream_.FailAfter(-1);  // A hit did not call upstream: do not fail a later call.
    if (!threw) {
      Record(p, bytes, alignment, before);
      return;
    }
    // Nothing changed but the miss (a span class: the spans had no free block, and the new
    // span failed).
    const Stats& b = before.stats;
    const Stats after = resource_->GetStats();
    FUZZ_CHECK_EQ(upstream_.live_blocks(), live_before);
    FUZZ_CHECK_EQ(upstream_.allocations(), before.allocations);
    FUZZ_CHECK_EQ(upstream_.deallocations(), before.deallocations);
    FUZZ_CHECK_EQ(after.cached_blocks(), b.cached_blocks());
    FUZZ_CHECK_EQ(after.hits, b.hits);
    FUZZ_CHECK_EQ(after.direct, b.direct);
    FUZZ_CHECK_EQ(after.refilled, b.refilled);
    FUZZ_CHECK_EQ(after.spills, b.spills);
    FUZZ_CHECK_EQ(after.span_bytes, b.span_bytes);
    FUZZ_CHECK_EQ(after.span_block_bytes, b.span_block_bytes);
    FUZZ_CHECK_EQ(after.span_free_bytes, b.span_free_bytes);
    if (IsDirect(bytes, alignment)) {
      FUZZ_CHECK_EQ(after.misses, b.misses);
    } else {
      FUZZ_CHECK_EQ(after.misses, b.misses + 1);
      ++pooled_allocations_;
      ++failed_misses_;
      ResourceUsed();
    }
  }

  void BadAlignment(size_t bytes, size_t alignment, bool inline_api) {
    const Stats before = resource_->GetStats();
    const uint64_t allocations_before = upstream_.allocations();
    bool threw = false;
    try {
      void* p = inline_api ? resource_->Allocate(bytes, alignment)
                           : resource_->allocate(bytes, alignment);
      static_cast<void>(p);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    FUZZ_CHECK(threw);
    const Stats after = resource_->GetStats();
    FUZZ_CHECK_EQ(upstream_.allocations(), allocations_before);
    FUZZ_CHECK_EQ(after.hits, before.hits);
    FUZZ_CHECK_EQ(after.misses, before.misses);
    FUZZ_CHECK_EQ(after.direct, before.direct);
    FUZZ_CHECK_EQ(after.cached_blocks(), before.cached_blocks());
    FUZZ_CHECK_EQ(after.span_free_bytes, before.span_free_bytes);
  }

  void Burst(size_t count, size_t bytes, size_t alignment) {
    const size_t first = blocks_.size();
    for (size_t k = 0; k < count && !Full(bytes); ++k) {
      Allocate(bytes, alignment, (k & 1) != 0);
      CheckInvariants();
    }
    while (blocks_.size() > first) {
      Deallocate(static_cast<uint8_t>(blocks_.size() - 1), (blocks_.size() & 1) != 0);
      CheckInvariants();
    }
  }

  void SweepResource(bool pressure) {
    const Ledger before = Snapshot();
    PruneReleasedBlocks();
    // The blocks of span classes given back since the last sweep that are still cached: the
    // model cannot tell which of them left for their spans since (a spill or the budget), only
    // how many blocks of span classes did, so at least the rest are still cached.
    const uint64_t may_have_left = before.span_blocks_left - span_left_at_resource_epoch_;
    const uint64_t span_still_cached =
        span_put_since_resource_epoch_.size() -
        std::min<uint64_t>(span_put_since_resource_epoch_.size(), may_have_left);
    resource_sweeper_.SweepNow(pressure);
    ++resource_quiet_sweeps_;
    const Ledger after = Snapshot();
    const Stats& b = before.stats;
    const Stats& a = after.stats;
    CheckSweep(b, a, pressure, resource_quiet_sweeps_, resource_registered_, resource_budget_);
    CheckReleaseOp(before, after,
                   (a.swept_bytes - b.swept_bytes) + (a.over_budget_bytes - b.over_budget_bytes) +
                       (a.pressure_bytes - b.pressure_bytes));
    // A wholly free span that a block was taken from since the previous epoch stays for one
    // more (Spans::ReleaseEmpty()): none is left after a pressure sweep or two quiet ones.
    if (resource_registered_ && (pressure || resource_quiet_sweeps_ >= 2)) CheckNoIdleSpans(a);
    if (!pressure && resource_budget_ == 0 && !Skipped("at_least_one_epoch")) {
      // At least one epoch: what was given back since the last sweep, and is still cached,
      // survives this one.
      for (const void* p : put_since_resource_epoch_) FUZZ_CHECK(probe_.IsLive(p));
      FUZZ_CHECK_LE(span_still_cached, ResourceHeld(a).span_cached_blocks);
    }
    put_since_resource_epoch_.clear();
    span_put_since_resource_epoch_.clear();
    span_left_at_resource_epoch_ = after.span_blocks_left;
  }

  void Trim() {
    const Ledger before = Snapshot();
    trimmed_ += before.stats.cached_blocks();
    resource_->Trim();
    const Ledger after = Snapshot();
    const Stats& b = before.stats;
    const Stats& a = after.stats;
    FUZZ_CHECK_EQ(a.cached_blocks(), 0);
    // A drain counts nothing in Stats.
    FUZZ_CHECK_EQ(a.swept_blocks, b.swept_blocks);
    FUZZ_CHECK_EQ(a.over_budget_blocks, b.over_budget_blocks);
    FUZZ_CHECK_EQ(a.pressure_blocks, b.pressure_blocks);
    FUZZ_CHECK_EQ(a.spills, b.spills);
    CheckReleaseOp(before, after, b.cached_bytes());
    // Every span left holds a block in use: none when no block of a span class is.
    CheckNoIdleSpans(a);
    put_since_resource_epoch_.clear();
    span_put_since_resource_epoch_.clear();
    span_left_at_resource_epoch_ = after.span_blocks_left;
  }

  // Forgets the blocks above kSpanMaxClassSize given back since the last sweep that have left
  // the cache since (by a spill of a batch, or over the budget): only those still cached must
  // survive the sweep.
  void PruneReleasedBlocks() {
    for (auto it = put_since_resource_epoch_.begin(); it != put_since_resource_epoch_.end();) {
      it = probe_.IsLive(*it) ? std::next(it) : put_since_resource_epoch_.erase(it);
    }
  }

  void ResourceUsed() {
    resource_registered_ = true;
    resource_quiet_sweeps_ = 0;
  }

  // Pool<Object> ------------------------------------------------------------------------------

  std::unique_ptr<Object> New() {
    ++new_calls_;
    if (new_returns_null_) return nullptr;
    auto o = std::make_unique<Object>();
    last_new_ = o.get();
    return o;
  }

  void Reset(Object& o) {
    if (throw_in_reset_) {
      throw_in_reset_ = false;
      throw ResetError();
    }
    FUZZ_CHECK_EQ(o.state, Object::kHeld);
    o.state = Object::kPooled;
  }

  size_t HeldObjects() const { return handles_.size() + released_.size(); }

  void Get(bool allow_new) {
    if (HeldObjects() >= kMaxObjects) {
      ResetHandle(0, true);
      return;
    }
    const uint64_t new_calls_before = new_calls_;
    new_returns_null_ = !allow_new;
    Pool<Object>::Handle h = pool_->Get();
    new_returns_null_ = false;
    ++gets_;
    PoolUsed();
    if (!h) {
      // Only New can come back empty.
      FUZZ_CHECK(!allow_new);
      FUZZ_CHECK_EQ(new_calls_, new_calls_before + 1);
      return;
    }
    Object* o = h.get();
    FUZZ_CHECK(held_.count(o) == 0);  // Never an object somebody holds.
    FUZZ_CHECK(Object::Live().count(o) != 0);
    if (new_calls_ != new_calls_before) {
      FUZZ_CHECK_EQ(new_calls_, new_calls_before + 1);
      FUZZ_CHECK(o == last_new_);
      FUZZ_CHECK_EQ(o->state, Object::kFresh);
    } else {
      // A pooled object: the reset hook ran on it and nobody wrote it since.
      FUZZ_CHECK_EQ(o->state, Object::kPooled);
      FUZZ_CHECK(o->StampIntact());
    }
    o->extra = kExtras[(serial_ * 2654435761u >> 7) % 8];
    owned_of_[o] = OwnedBytes<Object>::Of(*o);
    o->Stamp(serial_++);
    held_.insert(o);
    put_since_pool_epoch_.erase(o);
    handles_.push_back(std::move(h));
  }

  // Checks an object the model is about to give up.
  void Unhold(Object* o) {
    FUZZ_CHECK_EQ(o->state, Object::kHeld);
    FUZZ_CHECK(o->StampIntact());
    FUZZ_CHECK(held_.erase(o) == 1);
    unheld_bytes_ = OwnedBytes<Object>::Of(*o);
  }

  // After `o` went back to the pool: whatever the pool released was counted.
  void AfterPut(Object* o, const Stats& before, uint64_t destroyed_before) {
    PoolUsed();
    const Stats after = pool_->GetStats();
    if (!Skipped("hits_on_put")) FUZZ_CHECK_EQ(after.hits, before.hits);
    // An object over max_object_bytes is destroyed at once, and no other is.
    const bool oversized = max_object_bytes_ != 0 && unheld_bytes_ > max_object_bytes_;
    FUZZ_CHECK_EQ(after.oversized_objects - before.oversized_objects, oversized ? 1 : 0);
    FUZZ_CHECK_EQ(after.oversized_bytes - before.oversized_bytes, oversized ? unheld_bytes_ : 0);
    if (oversized) FUZZ_CHECK(Object::Live().count(o) == 0);
    FUZZ_CHECK_EQ(Object::destroyed() - destroyed_before,
                  (after.spills - before.spills) +
                      (after.over_budget_blocks - before.over_budget_blocks) +
                      (after.oversized_objects - before.oversized_objects));
    // A Put keeps the budget, but for what the other counts have not yet told it (at most
    // 1/64 of the budget, at least a byte: BlockCache::AccountOwned()).
    if (pool_budget_ != 0) {
      FUZZ_CHECK_LE(after.cached_bytes(),
                    pool_budget_ + std::max<uint64_t>(1, pool_budget_ / 64));
    }
    if (Object::Live().count(o) != 0) put_since_pool_epoch_.insert(o);
  }

  void ResetHandle(uint8_t index, bool by_reset) {
    if (handles_.empty()) return;
    const size_t i = index % handles_.size();
    Object* o = handles_[i].get();
    Unhold(o);
    const Stats before = pool_->GetStats();
    const uint64_t destroyed_before = Object::destroyed();
    if (by_reset) {
      handles_[i].reset();
      FUZZ_CHECK(!handles_[i]);
      handles_[i] = std::move(handles_.back());
      handles_.pop_back();
    } else {
      std::swap(handles_[i], handles_.back());
      handles_.pop_back();  // The handle's destructor puts the object back.
    }
    AfterPut(o, before, destroyed_before);
  }

  void ReleaseHandle(uint8_t index) {
    if (handles_.empty()) return;
    const size_t i = index % handles_.size();
    Object* o = handles_[i].get();
    std::unique_ptr<Object> owned = handles_[i].release();
    FUZZ_CHECK(owned.get() == o);
    FUZZ_CHECK(!handles_[i]);
    handles_[i] = std::move(handles_.back());
    handles_.pop_back();
    released_.push_back(std::move(owned));
  }

  void PutReleased(uint8_t index) {
    if (released_.empty()) {
      const Stats before = pool_->GetStats();
      pool_->Put(nullptr);  // Does nothing.
      const Stats after = pool_->GetStats();
      FUZZ_CHECK_EQ(after.cached_blocks(), before.cached_blocks());
      FUZZ_CHECK_EQ(after.spills, before.spills);
      return;
    }
    const size_t i = index % released_.size();
    std::unique_ptr<Object> owned = std::move(released_[i]);
    released_[i] = std::move(released_.back());
    released_.pop_back();
    Object* o = owned.get();
    Unhold(o);
    const Stats before = pool_->GetStats();
    const uint64_t destroyed_before = Object::destroyed();
    pool_->Put(std::move(owned));
    AfterPut(o, before, destroyed_before);
  }

  void DeleteReleased(uint8_t index) {
    if (released_.empty()) return;
    const size_t i = index % released_.size();
    Unhold(released_[i].get());
    released_[i] = std::move(released_.back());
    released_.pop_back();
    ++deleted_by_model_;
  }

  void MoveHandle(uint8_t target, uint8_t source, bool construct) {
    if (handles_.empty()) return;
    const size_t j = source % handles_.size();
    Object* moved = handles_[j].get();
    if (construct) {
      Pool<Object>::Handle h(std::move(handles_[j]));
      FUZZ_CHECK(!handles_[j]);
      FUZZ_CHECK(h.get() == moved);
      handles_[j] = std::move(h);
      FUZZ_CHECK(handles_[j].get() == moved);
      return;
    }
    const size_t i = target % handles_.size();
    if (i == j) {
      Pool<Object>::Handle& same = handles_[i];
      handles_[i] = std::move(same);  // Self-move: keeps the object.
      FUZZ_CHECK(handles_[i].get() == moved);
      return;
    }
    // The target's object goes back to the pool; the source is left empty.
    Object* replaced = handles_[i].get();
    Unhold(replaced);
    const Stats before = pool_->GetStats();
    const uint64_t destroyed_before = Object::destroyed();
    handles_[i] = std::move(handles_[j]);
    FUZZ_CHECK(handles_[i].get() == moved);
    FUZZ_CHECK(!handles_[j]);
    handles_[j] = std::move(handles_.back());
    handles_.pop_back();
    AfterPut(replaced, before, destroyed_before);
  }

  void ThrowingReset() {
    std::unique_ptr<Object> owned;
    if (!released_.empty()) {
      owned = std::move(released_.back());
      released_.pop_back();
    } else if (!handles_.empty()) {
      owned = handles_.back().release();
      handles_.pop_back();
    } else {
      return;
    }
    Object* o = owned.get();
    Unhold(o);
    const Stats before = pool_->GetStats();
    const uint64_t destroyed_before = Object::destroyed();
    throw_in_reset_ = true;
    bool threw = false;
    try {
      pool_->Put(std::move(owned));
    } catch (const ResetError&) {
      threw = true;
    }
    FUZZ_CHECK(threw);
    FUZZ_CHECK(!throw_in_reset_);
    // The object was destroyed and the pool left as it was.
    FUZZ_CHECK(Object::Live().count(o) == 0);
    FUZZ_CHECK_EQ(Object::destroyed(), destroyed_before + 1);
    ++destroyed_by_reset_;
    const Stats after = pool_->GetStats();
    FUZZ_CHECK_EQ(after.cached_blocks(), before.cached_blocks());
    FUZZ_CHECK_EQ(after.spills, before.spills);
  }

  void PoolBurst(size_t count) {
    const size_t first = handles_.size();
    for (size_t k = 0; k < count && HeldObjects() < kMaxObjects; ++k) {
      Get(/*allow_new=*/true);
      CheckInvariants();
    }
    while (handles_.size() > first) {
      ResetHandle(static_cast<uint8_t>(handles_.size() - 1), (handles_.size() & 1) != 0);
      CheckInvariants();
    }
  }

  void SweepPool(bool pressure) {
    const Stats before = pool_->GetStats();
    for (auto it = put_since_pool_epoch_.begin(); it != put_since_pool_epoch_.end();) {
      it = Object::Live().count(*it) != 0 ? std::next(it) : put_since_pool_epoch_.erase(it);
    }
    pool_sweeper_.SweepNow(pressure);
    ++pool_quiet_sweeps_;
    const Stats after = pool_->GetStats();
    CheckSweep(before, after, pressure, pool_quiet_sweeps_, pool_registered_, pool_budget_);
    if (!pressure && pool_budget_ == 0 && !Skipped("at_least_one_epoch")) {
      for (const Object* o : put_since_pool_epoch_) FUZZ_CHECK(Object::Live().count(o) != 0);
    }
    put_since_pool_epoch_.clear();
  }

  void Clear() {
    cleared_ += pool_->GetStats().cached_blocks();
    pool_->Clear();
    put_since_pool_epoch_.clear();
    FUZZ_CHECK_EQ(pool_->GetStats().cached_blocks(), 0);
  }

  void PoolUsed() {
    pool_registered_ = true;
    pool_quiet_sweeps_ = 0;
  }

  // Invariants --------------------------------------------------------------------------------

  void CheckInvariants() {
    const std::vector<std::string> errors = upstream_.errors();
    if (!errors.empty()) {
      std::fprintf(stderr, "pool_fuzzer: upstream: %s\n", errors.front().c_str());
      FUZZ_CHECK(errors.empty());
    }
    // PoolResource. The upstream holds the spans, the direct blocks the model holds, and the
    // blocks above kSpanMaxClassSize the model holds or the caches hold; the spans hold the
    // blocks of span classes the model holds or the caches hold, and the rest of their blocks
    // free. Every call upstream is counted, and so is every block in and out of the caches.
    const Stats r = resource_->GetStats();
    const Held h = ResourceHeld(r);
    FUZZ_CHECK_EQ(upstream_.live_blocks(), probe_.live().size());
    FUZZ_CHECK_EQ(upstream_.live_bytes(), r.span_bytes + h.direct_bytes + h.big_bytes +
                                              h.big_cached_bytes);
    FUZZ_CHECK_EQ(upstream_.live_blocks(), probe_.live_spans() + h.direct_blocks +
                                               h.big_blocks + h.big_cached_blocks);
    FUZZ_CHECK_EQ(upstream_.allocations(), probe_.span_allocations() + probe_.other_allocations());
    FUZZ_CHECK_EQ(upstream_.deallocations(),
                  probe_.span_deallocations() + probe_.other_deallocations());
    // The spans: what Stats says they hold is what the upstream lent and got back, and what
    // is not free in them is the span classes' blocks in use or cached, exactly.
    FUZZ_CHECK_EQ(r.span_bytes, probe_.span_live_bytes());
    FUZZ_CHECK_EQ(r.span_released_bytes, probe_.span_released_bytes());
    FUZZ_CHECK_LE(r.span_free_bytes, r.span_block_bytes);
    uint64_t min_block_bytes = 0;
    uint64_t max_block_bytes = 0;
    for (const auto& [at, e] : probe_.live()) {
      if (!IsSpanShape(e.bytes, e.alignment)) continue;
      // Every span handed its first block to the model (a miss takes a new span only for the
      // block it returns), so its class is known.
      FUZZ_CHECK(e.cls >= 0);
      FUZZ_CHECK_EQ(e.bytes, SpanBytesOf(static_cast<size_t>(e.cls)));
      // Its blocks fill it but for the header and less than a block at the end.
      min_block_bytes += e.bytes - kMaxSpanHeader - internal::ClassSize(static_cast<size_t>(e.cls));
      max_block_bytes += e.bytes - kMinSpanHeader;
    }
    FUZZ_CHECK_LE(min_block_bytes, r.span_block_bytes);
    FUZZ_CHECK_LE(r.span_block_bytes, max_block_bytes);
    FUZZ_CHECK_EQ(r.span_block_bytes - r.span_free_bytes, h.span_bytes + h.span_cached_bytes);
    FUZZ_CHECK_LE(h.span_cached_blocks * internal::ClassSize(0), h.span_cached_bytes);
    FUZZ_CHECK_LE(h.span_cached_bytes, h.span_cached_blocks * kSpanMaxClassSize);
    // Every block that entered the caches (by a miss that got one, or refilled) has left
    // them (spilled, swept, over the budget, under pressure, trimmed), is cached, or is in
    // use: for all pooled classes.
    FUZZ_CHECK_EQ(r.misses - failed_misses_ + r.refilled,
                  r.spills + r.swept_blocks + r.over_budget_blocks + r.pressure_blocks +
                      trimmed_ + r.cached_blocks() + h.span_blocks + h.big_blocks);
    // The classes above kSpanMaxClassSize: each block in came from upstream, each block out
    // went back there; direct requests are counted.
    FUZZ_CHECK_EQ(r.direct, direct_allocations_);
    const uint64_t big_in = probe_.other_allocations() - direct_allocations_;
    const uint64_t big_out = probe_.other_deallocations() - direct_deallocations_;
    FUZZ_CHECK_LE(big_in, r.misses - failed_misses_ + r.refilled);
    FUZZ_CHECK_LE(big_out, r.spills + r.swept_blocks + r.over_budget_blocks + r.pressure_blocks +
                               trimmed_);
    FUZZ_CHECK_EQ(big_in - big_out, h.big_blocks + h.big_cached_blocks);
    // Restartable sequences may count a hit twice; the locked mode counts exactly.
    FUZZ_CHECK_LE(pooled_allocations_, r.hits + r.misses);
    if (!Skipped("exact_hits")) {
      FUZZ_CHECK_LE(r.hits + r.misses,
                    pooled_allocations_ + (resource_->uses_rseq() ? kRestartSlack : 0));
    }

    // Pool<Object>: every object alive is held by the model or cached; every object made was
    // made by New, and every one destroyed is counted.
    const Stats p = pool_->GetStats();
    FUZZ_CHECK_EQ(Object::Live().size() - objects_at_start_, HeldObjects() + p.cached_blocks());
    // Bytes are what the cached objects own, exactly (one thread: every count is in). What
    // each owns is the model's record: cached objects are poisoned under AddressSanitizer.
    uint64_t cached_owned = 0;
    for (const Object* o : Object::Live()) {
      if (held_.count(o) == 0 && objects_at_start_set_.count(o) == 0) {
        const auto it = owned_of_.find(o);
        FUZZ_CHECK(it != owned_of_.end());
        cached_owned += it->second;
      }
    }
    FUZZ_CHECK_EQ(p.cached_bytes(), cached_owned);
    FUZZ_CHECK_EQ(p.misses, new_calls_);
    FUZZ_CHECK_EQ(Object::destroyed() - destroyed_at_start_,
                  deleted_by_model_ + destroyed_by_reset_ + p.spills + p.swept_blocks +
                      p.over_budget_blocks + p.pressure_blocks + p.oversized_objects +
                      cleared_);
    FUZZ_CHECK_LE(gets_, p.hits + p.misses);
    if (!Skipped("exact_hits")) {
      FUZZ_CHECK_LE(p.hits + p.misses, gets_ + (pool_->uses_rseq() ? kRestartSlack : 0));
    }
  }

  // Gives everything back, trims (unless the options ask to destroy full caches), destroys,
  // and checks that nothing is left anywhere.
  void Finish() {
    while (!blocks_.empty()) {
      Deallocate(static_cast<uint8_t>(blocks_.size() - 1), (blocks_.size() & 1) != 0);
    }
    while (!handles_.empty()) ResetHandle(static_cast<uint8_t>(handles_.size() - 1), true);
    while (!released_.empty()) PutReleased(static_cast<uint8_t>(released_.size() - 1));
    CheckInvariants();
    if (!destroy_full_) {
      Trim();
      Clear();
      CheckInvariants();
      FUZZ_CHECK_EQ(upstream_.live_blocks(), 0);
      FUZZ_CHECK_EQ(upstream_.live_bytes(), 0);
      FUZZ_CHECK_EQ(Object::Live().size(), objects_at_start_);
    }
    // Destroying a pool or a resource releases whatever it still caches, and every span.
    pool_.reset();
    resource_.reset();
    fake_cpu_.reset();
    FUZZ_CHECK(probe_.live().empty());
    FUZZ_CHECK_EQ(upstream_.live_blocks(), 0);
    FUZZ_CHECK_EQ(upstream_.live_bytes(), 0);
    FUZZ_CHECK(upstream_.errors().empty());
    FUZZ_CHECK_EQ(Object::Live().size(), objects_at_start_);
  }

  ByteReader& in_;

  // Upstream chain: PoolResource -> probe_ -> upstream_ -> new/delete.
  TrackingResource upstream_;
  LivenessProbe probe_{&upstream_};
  Sweeper resource_sweeper_{Sweeper::Options::Manual()};
  Sweeper pool_sweeper_{Sweeper::Options::Manual()};
  std::optional<PoolResource> resource_;
  std::optional<Pool<Object>> pool_;
  std::optional<ScopedFakeCpu> fake_cpu_;
  int cpus_ = 1;
  bool destroy_full_ = false;  // Finish() destroys without Trim() and Clear() first.
  size_t resource_budget_ = 0;
  size_t pool_budget_ = 0;
  uint64_t serial_ = 0;

  // The resource's model.
  std::vector<Block> blocks_;
  std::map<uintptr_t, uintptr_t> extents_;  // [begin, end) of every live block.
  uint64_t live_request_bytes_ = 0;         // Requested bytes of the blocks in blocks_.
  uint64_t pooled_allocations_ = 0;         // Pooled allocate calls: hits and misses.
  uint64_t failed_misses_ = 0;              // Misses whose upstream call threw.
  uint64_t direct_allocations_ = 0;
  uint64_t direct_deallocations_ = 0;
  uint64_t trimmed_ = 0;                    // Blocks released by Trim(): uncounted by Stats.
  bool resource_registered_ = false;
  int resource_quiet_sweeps_ = 0;
  // Blocks given back since the last sweep: above kSpanMaxClassSize (still cached while the
  // upstream holds them), and of span classes (which the model cannot tell cached or not),
  // with the count of span-class blocks that had left the caches at that sweep.
  std::unordered_set<const void*> put_since_resource_epoch_;
  std::unordered_set<const void*> span_put_since_resource_epoch_;
  uint64_t span_left_at_resource_epoch_ = 0;

  // The pool's model.
  std::vector<Pool<Object>::Handle> handles_;
  std::vector<std::unique_ptr<Object>> released_;
  std::unordered_set<const Object*> held_;  // The objects of handles_ and released_.
  size_t objects_at_start_ = 0;
  std::unordered_set<const Object*> objects_at_start_set_;
  size_t max_object_bytes_ = 0;
  uint64_t unheld_bytes_ = 0;  // OwnedBytes of the object Unhold() saw last.
  // What each object the model got was given to own (stale entries for destroyed objects).
  std::unordered_map<const Object*, uint64_t> owned_of_;
  uint64_t destroyed_at_start_ = 0;
  uint64_t new_calls_ = 0;
  uint64_t gets_ = 0;
  uint64_t deleted_by_model_ = 0;
  uint64_t destroyed_by_reset_ = 0;
  uint64_t cleared_ = 0;  // Objects destroyed by Clear(): uncounted by Stats.
  bool new_returns_null_ = false;
  bool throw_in_reset_ = false;
  const Object* last_new_ = nullptr;
  bool pool_registered_ = false;
  int pool_quiet_sweeps_ = 0;
  std::unordered_set<const Object*> put_since_pool_epoch_;
};

}  // namespace
}  // namespace syncpool

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  syncpool::g_step = 0;
  syncpool::ByteReader in(data, size);
  syncpool::Harness harness(in);
  harness.Run();
  return 0;
}
