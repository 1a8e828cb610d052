// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// PoolResource's slow paths: misses, requests outside the size classes, debug checks, and
// releasing blocks upstream.

#include "syncpool/pool_resource.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/block_cache.h"
#include "src/debug_registry.h"
#include "src/large_blocks.h"
#include "src/spans.h"
#include "src/upstream_meter.h"
#include "src/block_releaser.h"
#include "src/option_table.h"
#include "src/pages.h"
#include "src/stats_report.h"
#include "syncpool/mimalloc_resource.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif

namespace syncpool {
namespace {

using internal::ClassAlignment;
using internal::ClassSize;
using internal::kMaxClassSize;
using internal::SizeClassOf;

const Options& Validated(const Options& options, std::pmr::memory_resource* upstream) {
  if (upstream == nullptr) {
    throw std::invalid_argument("syncpool::PoolResource: upstream resource is null");
  }
  internal::ValidateOptions(options, "syncpool::PoolResource", internal::OptionUser::kResource);
  return options;
}

// Enough classes for the rounding of every admitted request: a request of at most
// max_block_size bytes and alignment at most kMaxPooledAlignment has a PooledSize() of at most
// max_block_size rounded up to kMaxPooledAlignment (which stays within kMaxClassSize).
size_t NumClasses(const Options& options) {
  return SizeClassOf(internal::PooledSize(options.max_block_size, kMaxPooledAlignment)) + 1;
}

std::vector<size_t> ClassBytes(const Options& options) {
  std::vector<size_t> bytes(NumClasses(options));
  for (size_t c = 0; c < bytes.size(); ++c) bytes[c] = ClassSize(c);
  return bytes;
}

// The most bytes one CPU's stack of a class kept in spans grows to, per generation: the hot
// layer in front of the spans (Policy()).
constexpr size_t kSpanHotClassBytes = 64 * 1024;

// Per class, how many blocks a miss takes from upstream (Options::refill_bytes): 1 to `most`,
// and at most what an empty CPU stack of the class starts with room for besides the block the
// miss returns, so that the refilled blocks fit it.
std::array<uint8_t, internal::kNumSizeClasses> RefillBlocks(
    const Options& options, const std::vector<uint32_t>& capacities, size_t most) {
  std::array<uint8_t, internal::kNumSizeClasses> blocks{};
  for (size_t cls = 0; cls < capacities.size(); ++cls) {
    const size_t fit = std::min<size_t>(options.refill_bytes / ClassSize(cls),
                                        size_t{capacities[cls]} + 1);
    blocks[cls] = static_cast<uint8_t>(std::clamp<size_t>(fit, 1, most));
  }
  return blocks;
}

// The cache's policy: as `options` ask, except for the classes kept in spans, whose per-CPU
// stacks grow to at most kSpanHotClassBytes each and send what overflows straight back to the
// spans (no TransferStack): the hot layer stays small, and the rest of a large working set is
// handed out by address (src/spans.h).
internal::CachePolicy Policy(const Options& options, const std::vector<size_t>& class_bytes,
                             const std::vector<uint32_t>& start) {
  internal::CachePolicy policy = internal::PolicyOf(options, class_bytes);
  const size_t span_classes = std::min(policy.max_capacities.size(), internal::kNumSpanClasses);
  for (size_t cls = 0; cls < span_classes; ++cls) {
    const uint32_t cap = static_cast<uint32_t>(std::max<size_t>(2, kSpanHotClassBytes / ClassSize(cls)));
    policy.max_capacities[cls] = std::max(start[cls], std::min(policy.max_capacities[cls], cap));
  }
  policy.direct_release_classes = span_classes;
  return policy;
}

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

// What the constructor derives from the options, each once: the classes' sizes, where each
// class's per-CPU capacity starts (internal::SizingOf()), the cache's policy and the refill
// sizes.
class PoolResource::Releaser final : public internal::BlockReleaser {
 public:
  explicit Releaser(PoolResource* resource) : resource_(resource) {}
  void Release(size_t cls, void* const* blocks, size_t n) override {
    resource_->Release(cls, blocks, n);
  }
  void ReleaseIdle(bool everything, internal::SweepPacer* pacer) override {
    resource_->ReleaseIdle(everything, pacer);
  }
  // The resource's own locks: its debug registry's, its span shards', its large blocks'
  // (fork.h, rank kSweepers).
  void LockForFork() override {
    if (resource_->registry_ != nullptr) resource_->registry_->LockForFork();
    resource_->spans_->LockForFork();
    resource_->large_->LockForFork();
  }
  void UnlockAfterFork() override {
    resource_->large_->UnlockAfterFork();
    resource_->spans_->UnlockAfterFork();
    if (resource_->registry_ != nullptr) resource_->registry_->UnlockAfterFork();
  }

 private:
  PoolResource* const resource_;
};

struct PoolResource::Plan {
  explicit Plan(const Options& options)
      : class_bytes(ClassBytes(options)),
        start(internal::SizingOf(options, class_bytes).start),
        policy(Policy(options, class_bytes, start)),
        refill_blocks(RefillBlocks(options, start, kMaxRefill)) {}

  std::vector<size_t> class_bytes;
  std::vector<uint32_t> start;
  internal::CachePolicy policy;
  std::array<uint8_t, internal::kNumSizeClasses> refill_blocks;
};

namespace {

#if !defined(SYNCPOOL_SANITIZER)
// Whether the process runs under valgrind: its client request where the header is there when
// building, else the preloaded library valgrind starts every client with.
bool RunningUnderValgrind() {
#if __has_include(<valgrind/valgrind.h>)
  if (RUNNING_ON_VALGRIND) return true;
#endif
  const char* preload = std::getenv("LD_PRELOAD");
  return preload != nullptr && std::strstr(preload, "vgpreload") != nullptr;
}
#endif

}  // namespace

std::pmr::memory_resource* DefaultUpstream() {
#if defined(SYNCPOOL_SANITIZER)
  // Sanitizers must see every allocation: they intercept malloc, not a library loaded aside.
  return std::pmr::new_delete_resource();
#else
  static std::pmr::memory_resource* const upstream = [] {
    // So must valgrind, which also replaces the `free` that mimalloc's library exports, so that
    // a block from mimalloc would be freed through valgrind's: an invalid free.
    if (RunningUnderValgrind()) return std::pmr::new_delete_resource();
    std::pmr::memory_resource* mimalloc = MimallocResource::Get();
    return mimalloc != nullptr ? mimalloc : std::pmr::new_delete_resource();
  }();
  return upstream;
#endif
}

PoolResource::PoolResource(Options options, std::pmr::memory_resource* upstream)
    : PoolResource(options, upstream, Plan(Validated(options, upstream))) {}

PoolResource::PoolResource(const Options& options, std::pmr::memory_resource* upstream,
                           Plan plan)
    : // Debug checks are a layer on the slow paths. The inline paths of a checked resource
      // work on stacks that never open (BlockCache::ClosedLocal()), so every call comes to
      // AllocateSlow() and DeallocateSlow(), which skip the sequences (debug_); an inline limit
      // of 0 sends all but zero-byte requests there without touching any stack, so that a call
      // into a destroyed resource reaches the check in CheckDeallocate().
      inline_limit_(internal::DebugChecksEnabled(options)
                        ? 0
                        : std::min(options.max_block_size, internal::kSmallSizeLimit)),
      upstream_(upstream),
      meter_(std::make_unique<internal::UpstreamMeter>(upstream)),
      max_block_size_(options.max_block_size),
      discard_min_bytes_(options.discard_min_bytes),
      refill_blocks_(plan.refill_blocks),
      debug_(internal::DebugChecksEnabled(options)),
      registry_(debug_ ? std::make_unique<internal::DebugRegistry>(
                             internal::PoolLabel("PoolResource", options.name, this))
                       : nullptr),
      // Spans and the larger blocks left at the end go back as every block does: their pages
      // discarded first (GiveBack()).
      spans_(std::make_unique<internal::Spans>(
          meter_.get(), plan.class_bytes.size(), &GiveBackOf, this,
          internal::PoolLabel("PoolResource", options.name, this))),
      large_(std::make_unique<internal::LargeBlocks>(&GiveBackOf, this)),
      releaser_(std::make_unique<Releaser>(this)),
      cache_(std::make_unique<internal::BlockCache>(
          std::move(plan.class_bytes), std::move(plan.start), releaser_.get(),
          options.sweeper != nullptr ? options.sweeper : &Sweeper::Default(),
          options.allow_rseq, std::move(plan.policy))),
      local_(debug_ ? cache_->ClosedLocal() : cache_->local()),
      report_(std::make_unique<internal::StatsReportEntry>("PoolResource", options.name, this,
                                                           [this] { return GetStats(); })) {
  // Rows of classes the cache does not have (max_block_size below 4 KiB) stay null: the
  // inline paths never reach them (inline_limit_).
  for (size_t i = 0; i < small_rows_.size(); ++i) {
    const size_t cls = internal::kSmallSizeClasses[i];
    small_rows_[i] = cls < cache_->num_classes() ? local_.Row(cls) : nullptr;
  }
}

PoolResource::~PoolResource() {
  if (debug_) {
    // What was handed out and never deallocated: given back upstream below with the rest.
    const internal::DebugRegistry::Count left = registry_->Outstanding();
    if (left.blocks != 0) {
      std::fprintf(stderr,
                   "syncpool: %s destroyed with %zu blocks (%zu bytes) still allocated from it; "
                   "they go back upstream now\n",
                   spans_->pool().c_str(), left.blocks, left.bytes);
    }
  }
  // Then the members: cache_ first, which drains into spans_ and large_; they give back what
  // is left. The mark stays in the object's memory: a later deallocate through the inline
  // path of a checked resource (PoolAllocator's, for a container that outlived it) finds it
  // while that memory is not reused (an atomic store: not removed as a dead store).
  destroyed_.store(true, std::memory_order_release);
}

void PoolResource::Trim() { cache_->Drain(); }

void PoolResource::release() {
  cache_->Drain();
  spans_->ReleaseAll();
  large_->ReleaseAll();
  if (debug_) registry_->Clear();
}

PoolResource& PoolResource::Default() {
  // Never destroyed: usable from static destructors; its cache is swept like any other.
  static PoolResource* const instance = new PoolResource(Options{.name = "default"});
  return *instance;
}

// The slow paths decide once per tier: inside the classes or not; then, for a class, its
// cache's sequence (the rseq mode) or its slow path (AllocateClass()); outside them, an
// invalid alignment or a block of its own upstream (AllocateUnpooled()).
void* PoolResource::AllocateSlow(size_t bytes, size_t alignment) {
  if (ABSL_PREDICT_FALSE(!IsPooledRequest(bytes, alignment))) {
    return AllocateUnpooled(bytes, alignment);
  }
  const size_t cls = internal::RequestClass(bytes, alignment);
  // In the locked and per-thread modes the sequence would fail: straight to the slow path, as
  // with debug checks, which live there.
  if (ABSL_PREDICT_TRUE(local_.uses_rseq()) && ABSL_PREDICT_TRUE(!debug_)) {
    return local_.GetOr(cls, local_.Row(cls), [this, cls, bytes, alignment] {
      return AllocateClass(cls, bytes, alignment);
    });
  }
  return AllocateClass(cls, bytes, alignment);
}

ABSL_ATTRIBUTE_NOINLINE void* PoolResource::AllocateUnpooled(size_t bytes, size_t alignment) {
  if (!IsPowerOfTwo(alignment)) {
    throw std::invalid_argument("syncpool::PoolResource::allocate: alignment " +
                                std::to_string(alignment) + " is not a power of two");
  }
  void* const p = TakeLarge(bytes, alignment);
  counters_.direct.fetch_add(1, std::memory_order_relaxed);
  if (debug_) {
    try {
      registry_->OnAllocate(p, bytes, alignment);
    } catch (...) {  // The registry could not grow: give the block back, as if never taken.
      GiveBackLarge(p, bytes, alignment);
      throw;
    }
  }
  return p;
}

ABSL_ATTRIBUTE_NOINLINE void* PoolResource::AllocateClass(size_t cls, size_t bytes,
                                                          size_t alignment) {
  void* p = cache_->GetSlow(cls);  // The sequence failed already.
  if (p == nullptr) p = Refill(cls);
  if (ABSL_PREDICT_FALSE(debug_)) {
    try {
      registry_->OnAllocate(p, bytes, alignment);
    } catch (...) {  // The registry could not grow: give the block back, as if never taken.
      cache_->Put(cls, p);
      throw;
    }
  }
  return p;
}

void* PoolResource::Refill(size_t cls) {
  void* blocks[kMaxRefill];
  if (spans_->Serves(cls)) {
    // Lowest address first, and cached so that the next allocations pop them in that order.
    const size_t n = spans_->Take(cls, blocks, refill_blocks_[cls]);  // May throw.
    return Cache(cls, blocks, n);
  }
  const size_t size = ClassSize(cls);
  const size_t alignment = ClassAlignment(cls);
  // May throw: nothing has been changed yet, so the resource stays as it was.
  blocks[0] = TakeLarge(size, alignment);
  size_t n = 1;
  try {
    while (n < refill_blocks_[cls]) {
      blocks[n] = TakeLarge(size, alignment);
      ++n;
    }
  } catch (...) {
    // The request has its block: the refill stops where the upstream did.
  }
  // (Spans::Take() counts its own refills.)
  counters_.refilled.fetch_add(n - 1, std::memory_order_relaxed);
  return Cache(cls, blocks, n);
}

void* PoolResource::Cache(size_t cls, void* const* blocks, size_t n) {
  // Pushed last first (one batch), so that the next allocations pop them in the given order.
  void* reversed[kMaxRefill];
  for (size_t i = 1; i < n; ++i) reversed[n - 1 - i] = blocks[i];
  cache_->PutBatch(cls, reversed, n - 1);
  return blocks[0];
}

// As AllocateSlow(): inside the classes or not, then the sequence or the slow path.
void PoolResource::DeallocateSlow(void* p, size_t bytes, size_t alignment) {
  if (ABSL_PREDICT_FALSE(!IsPooledRequest(bytes, alignment))) {
    DeallocateUnpooled(p, bytes, alignment);
    return;
  }
  const size_t cls = internal::RequestClass(bytes, alignment);
  // (local_, not cache_: a checked deallocate into a destroyed resource gets here, and then to
  // its check, with only the resource's own memory to read.)
  if (ABSL_PREDICT_TRUE(local_.uses_rseq()) && ABSL_PREDICT_TRUE(!debug_) &&
      ABSL_PREDICT_TRUE(local_.TryPutAt(cls, local_.Row(cls), p))) {
    return;
  }
  DeallocateClass(p, cls, bytes, alignment);
}

ABSL_ATTRIBUTE_NOINLINE void PoolResource::DeallocateClass(void* p, size_t cls, size_t bytes,
                                                          size_t alignment) {
  if (debug_) CheckDeallocate(p, bytes, alignment);
  // Put(), not PutSlow(): its inline part poisons the block for AddressSanitizer, which
  // DeallocateSlow() skipped in the locked mode.
  cache_->Put(cls, p);
}

ABSL_ATTRIBUTE_NOINLINE void PoolResource::DeallocateUnpooled(void* p, size_t bytes,
                                                           size_t alignment) {
  if (debug_) CheckDeallocate(p, bytes, alignment);
  if (!IsPowerOfTwo(alignment)) {
    // allocate() never succeeded with such an alignment: this block is not ours.
    internal::DieOfMisuse(spans_->pool(),
                          "deallocate of %p with alignment %zu, which is not a power of two", p,
                          alignment);
  }
  GiveBackLarge(p, bytes, alignment);
}

void PoolResource::CheckDeallocate(void* p, size_t bytes, size_t alignment) {
  if (destroyed_.load(std::memory_order_acquire)) {
    internal::DieOfMisuse(internal::PoolLabel("PoolResource", "", this),
                          "deallocate of %p (size %zu) into a resource already destroyed (a "
                          "container outlived its resource)",
                          p, bytes);
  }
  registry_->OnDeallocate(p, bytes, alignment);
}

void* PoolResource::TakeLarge(size_t bytes, size_t alignment) {
  void* const p = meter_->allocate(bytes, alignment);  // May throw: nothing taken.
  try {
    large_->Add(p, bytes, alignment);
  } catch (...) {  // The record could not grow: as if the upstream had failed.
    meter_->deallocate(p, bytes, alignment);
    throw;
  }
  return p;
}

void PoolResource::GiveBackLarge(void* p, size_t bytes, size_t alignment) {
  internal::LargeBlocks::Block block;
  if (!large_->Remove(p, &block)) {
    internal::DieOfMisuse(spans_->pool(),
                          "deallocate of %p (size %zu, alignment %zu): this resource did not "
                          "hand it out, or it was already deallocated (double deallocate)",
                          p, bytes, alignment);
  }
  if (block.bytes != bytes || block.alignment != alignment) {
    internal::DieOfMisuse(spans_->pool(),
                          "deallocate of %p with size %zu and alignment %zu, but it was "
                          "allocated with size %zu and alignment %zu",
                          p, bytes, alignment, block.bytes, block.alignment);
  }
  GiveBack(p, bytes, alignment);
}

void PoolResource::GiveBackOf(void* self, void* p, size_t bytes, size_t alignment) {
  static_cast<PoolResource*>(self)->GiveBack(p, bytes, alignment);
}

void PoolResource::GiveBack(void* p, size_t bytes, size_t alignment) {
  if (discard_min_bytes_ != 0 && bytes >= discard_min_bytes_) {
    counters_.discarded_bytes.fetch_add(internal::DiscardInteriorPages(p, bytes),
                               std::memory_order_relaxed);
  }
  meter_->deallocate(p, bytes, alignment);
}

void PoolResource::Release(size_t cls, void* const* blocks, size_t n) {
  if (spans_->Serves(cls)) {
    spans_->Return(cls, blocks, n);
    return;
  }
  const size_t size = ClassSize(cls);
  const size_t alignment = ClassAlignment(cls);
  for (size_t i = 0; i < n; ++i) GiveBackLarge(blocks[i], size, alignment);
}

void PoolResource::ReleaseIdle(bool everything, internal::SweepPacer* pacer) {
  spans_->ReleaseEmpty(everything, pacer);
}

Stats PoolResource::GetStats() const {
  Stats s = cache_->Snapshot();
  s.direct = counters_.direct.load(std::memory_order_relaxed);

  s.discarded_bytes = counters_.discarded_bytes.load(std::memory_order_relaxed);
  s.label = report_->label();
  const internal::Spans::Counts spans = spans_->GetCounts(&s.classes);
  s.span_bytes = spans.span_bytes;
  s.span_block_bytes = spans.block_bytes;
  s.span_free_bytes = spans.free_bytes;
  s.span_released_bytes = spans.released_bytes;
  s.refilled = counters_.refilled.load(std::memory_order_relaxed) + spans.refilled;
  // Read apart, without a common lock: approximate while other threads allocate.
  const uint64_t large = large_->bytes();
  s.upstream_bytes = meter_->bytes();
  s.peak_upstream_bytes = meter_->peak();
  const uint64_t held = spans.block_bytes - spans.free_bytes + large;
  s.in_use_bytes = held > s.cached_bytes() ? held - s.cached_bytes() : 0;
  return s;
}

}  // namespace syncpool
