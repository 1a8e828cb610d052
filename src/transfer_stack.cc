// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/transfer_stack.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace syncpool {
namespace internal {

void TransferStack::Init(uint32_t capacity) {
  slots_ = std::make_unique<void*[]>(3 * size_t{capacity});
  SpinLockHolder l(&lock_);
  capacity_ = capacity;
  primary_ = slots_.get();
  victim_ = slots_.get() + capacity;
  spare_ = slots_.get() + 2 * size_t{capacity};
}

size_t TransferStack::Insert(void* const* blocks, size_t n) {
  SpinLockHolder l(&lock_);
  const uint32_t count = primary_count_.load(std::memory_order_relaxed);
  const size_t k = std::min<size_t>(n, capacity_ - count);
  std::memcpy(primary_ + count, blocks, k * sizeof(void*));
  primary_count_.store(count + static_cast<uint32_t>(k), std::memory_order_relaxed);
  return k;
}

size_t TransferStack::Remove(void** out, size_t n) {
  SpinLockHolder l(&lock_);
  // Takes up to n - taken blocks from the top of one generation.
  size_t taken = 0;
  auto take = [&](std::atomic<uint32_t>& count, void** slots) {
    const uint32_t have = count.load(std::memory_order_relaxed);
    const size_t k = std::min<size_t>(n - taken, have);
    std::memcpy(out + taken, slots + (have - k), k * sizeof(void*));
    count.store(have - static_cast<uint32_t>(k), std::memory_order_relaxed);
    taken += k;
  };
  take(primary_count_, primary_);
  take(victim_count_, victim_);
  return taken;
}

void** TransferStack::AgeDetach(uint32_t* detached) {
  SpinLockHolder l(&lock_);
  void** const retired = victim_;
  *detached = victim_count_.load(std::memory_order_relaxed);
  victim_ = primary_;
  victim_count_.store(primary_count_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  primary_ = spare_;
  primary_count_.store(0, std::memory_order_relaxed);
  spare_ = nullptr;
  return retired;
}

void TransferStack::ReturnSpare(void** slots) {
  SpinLockHolder l(&lock_);
  spare_ = slots;
}

size_t TransferStack::TakeAll(void** out) {
  SpinLockHolder l(&lock_);
  const uint32_t primary = primary_count_.load(std::memory_order_relaxed);
  const uint32_t victim = victim_count_.load(std::memory_order_relaxed);
  std::memcpy(out, primary_, primary * sizeof(void*));
  std::memcpy(out + primary, victim_, victim * sizeof(void*));
  primary_count_.store(0, std::memory_order_relaxed);
  victim_count_.store(0, std::memory_order_relaxed);
  return size_t{primary} + victim;
}

}  // namespace internal
}  // namespace syncpool
