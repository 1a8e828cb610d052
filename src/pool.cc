// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "syncpool/pool.h"

#include <stdexcept>

#include "src/block_cache.h"
#include "src/debug_registry.h"
#include "src/block_releaser.h"
#include "src/option_table.h"
#include "src/stats_report.h"

namespace syncpool {
namespace internal {
namespace {

constexpr char kWho[] = "syncpool::Pool";

// What sizes the per-CPU capacities: where the objects' owned bytes are counted, the byte
// budget bounds those (at Put and at epochs), not the capacities' sizeof(T).
Options SizingOptions(const Options& options, bool owning) {
  Options sizing = options;
  if (owning) sizing.max_cached_bytes = 0;
  return sizing;
}

// Where the per-CPU capacity starts (SizingOf()).
std::vector<uint32_t> StartCapacity(size_t object_size, const Options& options, bool owning) {
  return SizingOf(SizingOptions(options, owning), {object_size}).start;
}

BlockCache::Policy PoolPolicy(size_t object_size, const Options& options, bool owning) {
  BlockCache::Policy policy = PolicyOf(SizingOptions(options, owning), {object_size});
  policy.max_cached_bytes = options.max_cached_bytes;
  policy.owned_bytes = owning;
  return policy;
}

}  // namespace

class PoolBase::Releaser final : public BlockReleaser {
 public:
  explicit Releaser(PoolBase* pool) : pool_(pool) {}
  void Release(size_t /*cls*/, void* const* blocks, size_t n) override {
    pool_->Release(blocks, n);
  }
  uint64_t OwnedBytes(size_t /*cls*/, const void* block) override {
    return pool_->OwnedBytes(block);
  }
  // The pool's one lock of its own, its debug registry's (fork.h, rank kSweepers).
  void LockForFork() override {
    if (pool_->registry_ != nullptr) pool_->registry_->LockForFork();
  }
  void UnlockAfterFork() override {
    if (pool_->registry_ != nullptr) pool_->registry_->UnlockAfterFork();
  }

 private:
  PoolBase* const pool_;
};

PoolBase::PoolBase(size_t object_size, void (*destroy)(void*),
                   uint64_t (*owned_bytes)(const void*), const Options& options)
    : destroy_(destroy),
      owned_bytes_(owned_bytes),
      // The first member made from the options: they are validated here, before the rest.
      max_object_bytes_((ValidateOptions(options, kWho, OptionUser::kPool),
                         options.max_object_bytes == 0 ? ~uint64_t{0}
                                                       : options.max_object_bytes)),
      debug_(DebugChecksEnabled(options)),
      registry_(debug_ ? std::make_unique<DebugRegistry>(PoolLabel("Pool", options.name, this))
                       : nullptr),
      releaser_(std::make_unique<Releaser>(this)),
      cache_(std::make_unique<BlockCache>(
          std::vector<size_t>{object_size},
          StartCapacity(object_size, options, owned_bytes != nullptr), releaser_.get(),
          options.sweeper != nullptr ? options.sweeper : &Sweeper::Default(),
          options.allow_rseq, PoolPolicy(object_size, options, owned_bytes != nullptr))),
      // Debug checks are a layer on the slow paths: the inline paths of a checked pool work
      // on stacks that never open, so every Get and Put comes to GetSlow() and PutSlow().
      local_(debug_ ? cache_->ClosedLocal() : cache_->local()),
      report_(std::make_unique<StatsReportEntry>("Pool", options.name, this,
                                                 [this] { return GetStats(); })) {}

PoolBase::~PoolBase() = default;

void PoolBase::Clear() { cache_->Drain(); }

bool PoolBase::OverBudget(uint64_t bytes) const { return cache_->OverBudget(bytes); }

void PoolBase::Release(void* const* blocks, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (debug_) registry_->OnLeave(blocks[i]);
    destroy_(blocks[i]);
  }
}

uint64_t PoolBase::OwnedBytes(const void* block) const {
  return owned_bytes_(block);
}

Stats PoolBase::GetStats() const {
  Stats s = cache_->Snapshot();
  s.label = report_->label();
  s.oversized_objects = oversized_objects_.load(std::memory_order_relaxed);
  s.oversized_bytes = oversized_bytes_.load(std::memory_order_relaxed);
  return s;
}

void PoolBase::DropOnPut(void* obj, uint64_t bytes) {
  // With debug checks, a second Put of a cached object aborts here too, before anything is
  // destroyed.
  if (debug_) {
    registry_->OnPut(obj);
    registry_->OnLeave(obj);
  }
  if (bytes > max_object_bytes_) {
    oversized_objects_.fetch_add(1, std::memory_order_relaxed);
    oversized_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    cache_->CountOverBudget(1, bytes);
  }
  destroy_(obj);
}

void* PoolBase::GetSlow() {
  void* obj = cache_->GetSlow(0);
  if (debug_ && obj != nullptr) registry_->OnLeave(obj);
  return obj;
}

void PoolBase::PutSlow(void* obj) {
  if (debug_) registry_->OnPut(obj);  // Aborts on a second Put, before the cache is touched.
  cache_->PutSlow(0, obj);
}

}  // namespace internal
}  // namespace syncpool
