// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "syncpool/pool.h"

#include <stdexcept>

#include "src/debug_registry.h"

namespace syncpool {
namespace internal {
namespace {

uint32_t ValidatedCapacity(const Options& options) {
  if (options.max_blocks_per_class == 0) {
    throw std::invalid_argument("syncpool::Pool: Options::max_blocks_per_class must be >= 1");
  }
  return options.max_blocks_per_class;
}

std::vector<uint32_t> FittedCapacity(size_t object_size, const Options& options) {
  std::vector<uint32_t> caps = {ValidatedCapacity(options)};
  FitToBudget({object_size}, options.max_cached_bytes, caps);
  return caps;
}

}  // namespace

PoolBase::PoolBase(size_t object_size, void (*destroy)(void*), const Options& options)
    : destroy_(destroy),
      debug_(DebugChecksEnabled(options)),
      registry_(debug_ ? std::make_unique<DebugRegistry>() : nullptr),
      cache_({object_size}, FittedCapacity(object_size, options), this,
             options.sweeper != nullptr ? options.sweeper : &Sweeper::Default(),
             options.allow_rseq && !debug_, PolicyOf(options)),
      report_("Pool", options.name, this, [this] { return GetStats(); }) {}

PoolBase::~PoolBase() = default;

void PoolBase::Release(size_t /*cls*/, void* const* blocks, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (debug_) registry_->OnLeave(blocks[i]);
    destroy_(blocks[i]);
  }
}

void PoolBase::LockForFork() {
  if (registry_ != nullptr) registry_->LockForFork();
}

void PoolBase::UnlockAfterFork() {
  if (registry_ != nullptr) registry_->UnlockAfterFork();
}

void* PoolBase::GetSlow() {
  void* obj = cache_.GetSlow(0);
  if (debug_ && obj != nullptr) registry_->OnLeave(obj);
  return obj;
}

void PoolBase::PutSlow(void* obj) {
  if (debug_) registry_->OnPut(obj);  // Aborts on a second Put, before the cache is touched.
  cache_.PutSlow(0, obj);
}

}  // namespace internal
}  // namespace syncpool
