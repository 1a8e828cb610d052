// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A BlockCache's policy from Options: the mode (ChooseCacheMode()), the capacities
// (SizingOf(), FitToBudget()) and the rest of the policy (PolicyOf()). See cache_policy.h.

#include "src/cache_policy.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/cpu.h"
#include "src/option_table.h"
#include "syncpool/internal/percpu_rseq.h"
#include "src/thread_slots.h"

namespace syncpool {
namespace internal {
namespace {

// Why the sequences cannot be used in this process (RseqUsable() is false).
const char* WhyNoRseq() {
#if !SYNCPOOL_RSEQ_FAST_PATH
#if defined(ABSL_HAVE_THREAD_SANITIZER)
  return "ThreadSanitizer";
#else
  return "not x86-64 Linux with glibc";
#endif
#else
  if (!RseqAvailable()) return "glibc did not register rseq";
  if (ProcessOption(kOptRseq) == 0) return "SYNCPOOL_RSEQ=0";
  return "membarrier for rseq refused";
#endif
}

constexpr const char* kRseqName = "rseq per-CPU";
constexpr const char* kPerThreadName = "per-thread";
constexpr const char* kLockedName = "locked per-CPU";

}  // namespace

CacheModeChoice ChooseCacheMode(bool allow_rseq, CacheMode requested) {
  if (!allow_rseq) {
    return {false, false, kLockedName, "Options::allow_rseq is false"};
  }
  if (requested == CacheMode::kAuto) requested = GetOptionDefaults().mode;  // SYNCPOOL_MODE.
  const char* no_fence = "";
  if (requested == CacheMode::kPerThread) {
    if (ThreadFenceUsable(&no_fence)) {
      return {false, true, kPerThreadName, "asked for (Options::mode or SYNCPOOL_MODE)"};
    }
    return {false, false, kLockedName, no_fence};
  }
  if (RseqUsable()) return {true, false, kRseqName, RseqIndexReason()};
  if (requested == CacheMode::kPerCpu) return {false, false, kLockedName, WhyNoRseq()};
  if (ThreadFenceUsable(&no_fence)) return {false, true, kPerThreadName, WhyNoRseq()};
  return {false, false, kLockedName, no_fence};
}

CachePolicy PolicyOf(const Options& options, const std::vector<size_t>& class_bytes) {
  CachePolicy policy;
  policy.mode = options.mode;
  policy.retention = options.retention;
  policy.max_cached_bytes = options.max_cached_bytes;
  policy.max_capacities = SizingOf(options, class_bytes).max;
  policy.max_cpu_bytes = options.per_cpu_bytes;
  return policy;
}

void FitToBudget(const std::vector<size_t>& class_bytes, size_t budget,
                 std::vector<uint32_t>& capacities) {
  if (budget == 0) return;
  // Full, a class of capacity k holds 2k blocks per CPU and 4k in its TransferStack.
  const double per_block_set = 2.0 * NumCpus() + 4.0;
  double full = 0;
  for (size_t c = 0; c < capacities.size(); ++c) {
    full += per_block_set * capacities[c] * static_cast<double>(class_bytes[c]);
  }
  if (full <= static_cast<double>(budget)) return;
  const double scale = static_cast<double>(budget) / full;
  for (uint32_t& k : capacities) {
    k = std::max<uint32_t>(1, static_cast<uint32_t>(k * scale));
  }
}

CacheSizing SizingOf(const Options& options, const std::vector<size_t>& class_bytes) {
  CacheSizing sizing;
  sizing.max.resize(class_bytes.size());
  sizing.start.resize(class_bytes.size());
  for (size_t c = 0; c < class_bytes.size(); ++c) {
    const size_t by_bytes = std::max<size_t>(2, options.per_cpu_class_bytes / class_bytes[c]);
    sizing.max[c] = static_cast<uint32_t>(
        std::min<size_t>(options.max_blocks_per_class, by_bytes));
  }
  FitToBudget(class_bytes, options.max_cached_bytes, sizing.max);
  for (size_t c = 0; c < class_bytes.size(); ++c) {
    const size_t by_bytes = std::max<size_t>(2, kStartClassBytes / class_bytes[c]);
    sizing.start[c] = static_cast<uint32_t>(std::min<size_t>(
        {options.initial_blocks_per_class, by_bytes, size_t{sizing.max[c]}}));
  }
  return sizing;
}

}  // namespace internal
}  // namespace syncpool
