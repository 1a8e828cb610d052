// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/pool_allocator.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::PoolAllocator<T>`, a standard allocator over a PoolResource
// for ordinary containers in hot paths:
//
//   std::vector<int, syncpool::PoolAllocator<int>> v;            // PoolResource::Default()
//   syncpool::PoolResource mine;
//   std::vector<int, syncpool::PoolAllocator<int>> w{syncpool::PoolAllocator<int>(&mine)};
//
// Unlike std::pmr::polymorphic_allocator it calls the resource without a virtual call (the
// inline PoolResource::Allocate / Deallocate), and it propagates:
//
//   - propagate_on_container_copy_assignment, _move_assignment and _swap are all true: a
//     container that is assigned or swapped takes the other's resource along with its
//     elements, so memory is always returned to the resource it came from and assignment never
//     silently moves a container to another resource's memory element by element.
//   - select_on_container_copy_construction() returns a copy: a copied container uses the
//     same resource as the original (polymorphic_allocator would switch to the default
//     resource).
//   - is_always_equal is false; two allocators are equal when they use the same resource,
//     which is what makes memory from one deallocatable by the other.
//
// A default-constructed PoolAllocator uses PoolResource::Default().
//
// Thread safety: as the resource (all thread-safe). allocate(n) throws std::bad_array_new_length
// when n * sizeof(T) overflows, and whatever the upstream resource throws.

#ifndef SYNCPOOL_POOL_ALLOCATOR_H_
#define SYNCPOOL_POOL_ALLOCATOR_H_

#include <cstddef>
#include <limits>
#include <new>
#include <type_traits>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "syncpool/pool_resource.h"

namespace syncpool {

template <typename T>
class PoolAllocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  template <typename U>
  struct rebind {
    using other = PoolAllocator<U>;
  };

  PoolAllocator() noexcept : resource_(&PoolResource::Default()) {}
  // REQUIRES: resource is not null and outlives every block allocated through this allocator.
  explicit PoolAllocator(PoolResource* resource) noexcept : resource_(resource) {}
  template <typename U>
  PoolAllocator(const PoolAllocator<U>& other) noexcept  // NOLINT: implicit, as allocators are.
      : resource_(other.resource()) {}

  // PoolAllocator::allocate()
  //
  // Forced inline, as PoolResource::Allocate() is: the point of the allocator is a fast path
  // with neither a virtual nor a plain call.
  ABSL_ATTRIBUTE_ALWAYS_INLINE T* allocate(size_type n) {
    if (ABSL_PREDICT_FALSE(n > std::numeric_limits<size_type>::max() / sizeof(T))) {
      throw std::bad_array_new_length();
    }
    return static_cast<T*>(resource_->Allocate(n * sizeof(T), alignof(T)));
  }

  // PoolAllocator::deallocate()
  ABSL_ATTRIBUTE_ALWAYS_INLINE void deallocate(T* p, size_type n) noexcept {
    resource_->Deallocate(p, n * sizeof(T), alignof(T));
  }

  PoolAllocator select_on_container_copy_construction() const noexcept { return *this; }

  PoolResource* resource() const noexcept { return resource_; }

  template <typename U>
  friend bool operator==(const PoolAllocator& a, const PoolAllocator<U>& b) noexcept {
    return a.resource() == b.resource();
  }

 private:
  PoolResource* resource_;
};

}  // namespace syncpool

#endif  // SYNCPOOL_POOL_ALLOCATOR_H_
