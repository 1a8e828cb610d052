// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The pointers test threads hold now, each with its holder's tag: a block or object handed to a
// second holder while the first still has it is a failure the concurrency tests look for.
// Sharded to keep the checks from serializing the threads they watch; on syncpool's Mutex,
// which ThreadSanitizer sees.

#ifndef SYNCPOOL_TESTS_HELD_SET_H_
#define SYNCPOOL_TESTS_HELD_SET_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "src/mutex.h"

namespace syncpool {
namespace testing {

class HeldSet {
 public:
  // Records `p` as held under `tag` (nonzero); returns 0, or the tag of whoever holds it.
  uint64_t Acquire(const void* p, uint64_t tag) {
    Shard& s = ShardOf(p);
    internal::MutexLock l(&s.mu);
    auto [it, inserted] = s.held.emplace(p, tag);
    return inserted ? 0 : it->second;
  }

  // Forgets `p`; returns false unless it was held under `tag`.
  bool Release(const void* p, uint64_t tag) {
    Shard& s = ShardOf(p);
    internal::MutexLock l(&s.mu);
    auto it = s.held.find(p);
    if (it == s.held.end() || it->second != tag) return false;
    s.held.erase(it);
    return true;
  }

  // For callers that do not tell holders apart: true when `p` was not held yet / was held.
  bool Insert(const void* p) { return Acquire(p, kAnyHolder) == 0; }
  bool Erase(const void* p) { return Release(p, kAnyHolder); }

  size_t size() {
    size_t n = 0;
    for (Shard& s : shards_) {
      internal::MutexLock l(&s.mu);
      n += s.held.size();
    }
    return n;
  }

 private:
  static constexpr uint64_t kAnyHolder = 1;

  struct alignas(64) Shard {
    internal::Mutex mu;
    absl::flat_hash_map<const void*, uint64_t> held ABSL_GUARDED_BY(mu);
  };
  Shard& ShardOf(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    return shards_[((a >> 4) ^ (a >> 12)) % shards_.size()];
  }

  std::array<Shard, 64> shards_;
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_HELD_SET_H_
