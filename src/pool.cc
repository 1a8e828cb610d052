// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "syncpool/pool.h"

#include <stdexcept>

#include "src/debug_registry.h"

namespace syncpool {
namespace internal {
namespace {

constexpr char kWho[] = "syncpool::Pool";

// Where the per-CPU capacity starts (SizingOf()).
std::vector<uint32_t> StartCapacity(size_t object_size, const Options& options) {
  return SizingOf(options, {object_size}, kWho).start;
}

}  // namespace

PoolBase::PoolBase(size_t object_size, void (*destroy)(void*), const Options& options)
    : destroy_(destroy),
      debug_(DebugChecksEnabled(options)),
      registry_(debug_ ? std::make_unique<DebugRegistry>() : nullptr),
      cache_({object_size}, StartCapacity(object_size, options), this,
             options.sweeper != nullptr ? options.sweeper : &Sweeper::Default(),
             options.allow_rseq && !debug_, PolicyOf(options, {object_size}, kWho)),
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
