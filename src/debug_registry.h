// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The misuse checks behind Options::debug_checks: a registry of the blocks a resource has
// handed out (with their size and alignment), or of the objects a Pool<T> holds. A detected
// mistake prints a message naming it to stderr and aborts. Every call takes one mutex: the
// checks are for finding bugs, and cost nothing when off: with them on, the caches run in the
// locked mode, so every call reaches the slow paths where the checks are, and the inline paths
// test nothing for them.

#ifndef SYNCPOOL_SRC_DEBUG_REGISTRY_H_
#define SYNCPOOL_SRC_DEBUG_REGISTRY_H_

#include <cstddef>
#include <string>
#include <unordered_map>
#include <utility>

#include "src/mutex.h"
#include "syncpool/options.h"

namespace syncpool {
namespace internal {

// Whether checks are on for `options`: Options::debug_checks when set, else SYNCPOOL_DEBUG
// when set (read once per process), else Options::checks_by_build (the build of the code that
// made the Options).
bool DebugChecksEnabled(const Options& options);

// Prints "syncpool: <pool>: <what>" and the caller's stack on stderr, then aborts.
[[noreturn]] void DieOfMisuse(const std::string& pool, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

class DebugRegistry {
 public:
  // `pool` names the owner in the messages (PoolLabel(), internal/stats_report.h).
  explicit DebugRegistry(std::string pool) : pool_(std::move(pool)) {}

  // Resource blocks: handed out by allocate, taken back by deallocate.
  void OnAllocate(void* p, size_t bytes, size_t alignment);
  // Aborts when `p` is not handed out (never was, or already deallocated) or when `bytes` or
  // `alignment` differ from the allocation's.
  void OnDeallocate(void* p, size_t bytes, size_t alignment);

  // What is handed out now (resource blocks): how many, how many bytes.
  struct Count {
    size_t blocks = 0;
    size_t bytes = 0;
  };
  Count Outstanding();
  // Forgets every block (the resource's release()).
  void Clear();

  // Pool objects: in the pool between Put and Get (or until released).
  void OnPut(void* obj);  // Aborts when `obj` is already in the pool.
  void OnLeave(void* obj);

  // Around fork(): fork.h, rank kSweepers.
  void LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Lock(); }
  void UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Unlock(); }

 private:
  struct Block {
    size_t bytes;
    size_t alignment;
  };

  const std::string pool_;
  Mutex mu_;
  // A node-based map: a single insertion that throws (std::bad_alloc) leaves it unchanged.
  // Abseil's flat maps of the packaged version do not give that guarantee (a failed growth
  // leaves the table inconsistent), and these maps grow on paths that must survive it.
  std::unordered_map<void*, Block> blocks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_DEBUG_REGISTRY_H_
