// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A test upstream: a std::pmr::memory_resource that records every live allocation, records a
// deallocate whose pointer, size or alignment does not match an allocation (errors(): it
// fails nothing by itself, so every test that uses one checks that errors() is empty), and
// can be told to throw std::bad_alloc. Thread-safe.

#ifndef SYNCPOOL_TESTS_TRACKING_RESOURCE_H_
#define SYNCPOOL_TESTS_TRACKING_RESOURCE_H_

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "src/mutex.h"

namespace syncpool {
namespace testing {

class TrackingResource final : public std::pmr::memory_resource {
 public:
  explicit TrackingResource(
      std::pmr::memory_resource* upstream = std::pmr::new_delete_resource())
      : upstream_(upstream) {}

  // Bytes and blocks allocated and not yet deallocated.
  size_t live_bytes() const {
    internal::MutexLock l(&mu_);
    return live_bytes_;
  }
  size_t live_blocks() const {
    internal::MutexLock l(&mu_);
    return live_.size();
  }
  // Whether `p` is the start of a live allocation.
  bool IsLive(const void* p) const {
    internal::MutexLock l(&mu_);
    return live_.contains(const_cast<void*>(p));
  }
  uint64_t allocations() const {
    internal::MutexLock l(&mu_);
    return allocations_;
  }
  uint64_t deallocations() const {
    internal::MutexLock l(&mu_);
    return deallocations_;
  }
  // Mismatches seen (deallocate of an unknown pointer, or with another size or alignment),
  // each described in one line.
  std::vector<std::string> errors() const {
    internal::MutexLock l(&mu_);
    return errors_;
  }

  // The next `n` allocations succeed, the one after throws std::bad_alloc (once), and then
  // allocations succeed again. -1 (the default) never fails.
  void FailAfter(int64_t n) {
    internal::MutexLock l(&mu_);
    fail_after_ = n;
  }

 private:
  struct Block {
    size_t bytes;
    size_t alignment;
  };

  void* do_allocate(size_t bytes, size_t alignment) override {
    {
      internal::MutexLock l(&mu_);
      if (fail_after_ == 0) {
        fail_after_ = -1;
        throw std::bad_alloc();
      }
      if (fail_after_ > 0) --fail_after_;
    }
    void* p = upstream_->allocate(bytes, alignment);
    internal::MutexLock l(&mu_);
    live_[p] = Block{bytes, alignment};
    live_bytes_ += bytes;
    ++allocations_;
    return p;
  }

  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    {
      internal::MutexLock l(&mu_);
      auto it = live_.find(p);
      if (it == live_.end()) {
        errors_.push_back("deallocate of unknown pointer");
        return;  // Not ours: never hand it to upstream.
      }
      if (it->second.bytes != bytes || it->second.alignment != alignment) {
        errors_.push_back("deallocate of " + std::to_string(it->second.bytes) + "/" +
                          std::to_string(it->second.alignment) + " as " +
                          std::to_string(bytes) + "/" + std::to_string(alignment));
      }
      bytes = it->second.bytes;
      alignment = it->second.alignment;
      live_bytes_ -= bytes;
      live_.erase(it);
      ++deallocations_;
    }
    upstream_->deallocate(p, bytes, alignment);
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::pmr::memory_resource* const upstream_;
  mutable internal::Mutex mu_;
  absl::flat_hash_map<void*, Block> live_ ABSL_GUARDED_BY(mu_);
  size_t live_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t allocations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t deallocations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t fail_after_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_TRACKING_RESOURCE_H_
