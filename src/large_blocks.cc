// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/large_blocks.h"

#include <utility>
#include <vector>

namespace syncpool {
namespace internal {

LargeBlocks::Shard& LargeBlocks::ShardOf(const void* p) {
  // Large blocks are at least 16-byte aligned and usually page-aligned: mix the bits above.
  const uint64_t a = reinterpret_cast<uintptr_t>(p) >> 4;
  return shards_[((a ^ (a >> 8) ^ (a >> 16)) * 0x9E3779B97F4A7C15ull) >> 60];
}

void LargeBlocks::Add(void* p, size_t bytes, size_t alignment) {
  Shard& shard = ShardOf(p);
  SpinLockHolder l(&shard.lock);
  shard.blocks.emplace(p, Block{bytes, alignment});  // May throw: nothing recorded.
  shard.bytes += bytes;
}

bool LargeBlocks::Remove(void* p, Block* block) {
  Shard& shard = ShardOf(p);
  SpinLockHolder l(&shard.lock);
  auto it = shard.blocks.find(p);
  if (it == shard.blocks.end()) return false;
  *block = it->second;
  shard.bytes -= it->second.bytes;
  shard.blocks.erase(it);
  return true;
}

uint64_t LargeBlocks::ReleaseAll() {
  uint64_t bytes = 0;
  for (Shard& shard : shards_) {
    std::unordered_map<void*, Block> taken;
    {
      SpinLockHolder l(&shard.lock);
      taken.swap(shard.blocks);
      shard.bytes = 0;
    }
    // Given back with no lock held: the upstream may be slow.
    for (const auto& [p, block] : taken) {
      give_back_(context_, p, block.bytes, block.alignment);
      bytes += block.bytes;
    }
  }
  return bytes;
}

uint64_t LargeBlocks::blocks() const {
  uint64_t n = 0;
  for (const Shard& shard : shards_) {
    SpinLockHolder l(&shard.lock);
    n += shard.blocks.size();
  }
  return n;
}

uint64_t LargeBlocks::bytes() const {
  uint64_t n = 0;
  for (const Shard& shard : shards_) {
    SpinLockHolder l(&shard.lock);
    n += shard.bytes;
  }
  return n;
}

void LargeBlocks::LockForFork() {
  for (Shard& shard : shards_) shard.lock.Lock();
}

void LargeBlocks::UnlockAfterFork() {
  for (Shard& shard : shards_) shard.lock.Unlock();
}

}  // namespace internal
}  // namespace syncpool
