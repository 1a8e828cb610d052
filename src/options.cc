// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The defaults of Options, after the environment (options.h).

#include "syncpool/options.h"

#include "syncpool/internal/env.h"
#include "syncpool/internal/size_class.h"

namespace syncpool {
namespace internal {

const OptionDefaults& GetOptionDefaults() {
  static const OptionDefaults defaults = [] {
    constexpr uint64_t kUnbounded = ~uint64_t{0};
    OptionDefaults d;
    d.max_block_size = EnvInteger("SYNCPOOL_MAX_BLOCK_SIZE", 256 * 1024, 0, kMaxClassSize);
    d.per_cpu_class_bytes =
        EnvInteger("SYNCPOOL_PER_CPU_CLASS_BYTES", 8 << 20, 0, kUnbounded);
    d.per_cpu_bytes = EnvInteger("SYNCPOOL_PER_CPU_BYTES", 32 << 20, 0, kUnbounded);
    d.max_blocks_per_class = static_cast<uint32_t>(
        EnvInteger("SYNCPOOL_MAX_BLOCKS_PER_CLASS", 262144, 1, uint32_t{1} << 24));
    d.initial_blocks_per_class = static_cast<uint32_t>(
        EnvInteger("SYNCPOOL_INITIAL_BLOCKS_PER_CLASS", 128, 1, uint32_t{1} << 24));
    d.discard_min_bytes = EnvInteger("SYNCPOOL_DISCARD_MIN_BYTES", 16 * 1024, 0, kUnbounded);
    d.refill_bytes = EnvInteger("SYNCPOOL_REFILL_BYTES", 4096, 0, kUnbounded);
    d.retention = static_cast<Retention>(
        EnvChoice("SYNCPOOL_RETENTION", static_cast<int>(Retention::kWorkingSet),
                  {{"working_set", static_cast<int>(Retention::kWorkingSet)},
                   {"victim", static_cast<int>(Retention::kVictim)}}));
    d.max_cached_bytes = EnvInteger("SYNCPOOL_MAX_CACHED_BYTES", 0, 0, kUnbounded);
    d.max_object_bytes = EnvInteger("SYNCPOOL_MAX_OBJECT_BYTES", 0, 0, kUnbounded);
    d.mode = static_cast<CacheMode>(
        EnvChoice("SYNCPOOL_MODE", static_cast<int>(CacheMode::kAuto),
                  {{"auto", static_cast<int>(CacheMode::kAuto)},
                   {"percpu", static_cast<int>(CacheMode::kPerCpu)},
                   {"perthread", static_cast<int>(CacheMode::kPerThread)}}));
    return d;
  }();
  return defaults;
}

std::atomic<uint64_t>& ProcessLimit() {
  static std::atomic<uint64_t> limit{
      EnvInteger("SYNCPOOL_PROCESS_MAX_CACHED_BYTES", 0, 0, ~uint64_t{0})};
  return limit;
}

}  // namespace internal

void SetProcessCacheLimit(size_t bytes) {
  internal::ProcessLimit().store(bytes, std::memory_order_relaxed);
}

size_t ProcessCacheLimit() { return internal::ProcessLimit().load(std::memory_order_relaxed); }

}  // namespace syncpool
