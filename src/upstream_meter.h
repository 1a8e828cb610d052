// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// UpstreamMeter: the upstream resource of a PoolResource, counted. Every span and every larger
// block a PoolResource takes goes through it, so it knows the bytes held from upstream now
// and the most held at once (Stats::upstream_bytes, Stats::peak_upstream_bytes). Only the
// slow paths reach it. Private to src/.
//
// Thread safety: any thread. `bytes_` moves by atomic adds; the peak is raised by
// compare-and-swap to the value an allocation's add produced, so it is the highest value the
// count ever had.

#ifndef SYNCPOOL_SRC_UPSTREAM_METER_H_
#define SYNCPOOL_SRC_UPSTREAM_METER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory_resource>

namespace syncpool {
namespace internal {

class UpstreamMeter final : public std::pmr::memory_resource {
 public:
  explicit UpstreamMeter(std::pmr::memory_resource* upstream) : upstream_(upstream) {}

  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t peak() const { return peak_.load(std::memory_order_relaxed); }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    void* const p = upstream_->allocate(bytes, alignment);  // May throw: nothing counted.
    const uint64_t now = bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    uint64_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    upstream_->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::pmr::memory_resource* const upstream_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> peak_{0};
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_UPSTREAM_METER_H_
