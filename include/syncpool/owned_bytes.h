// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/owned_bytes.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::OwnedBytes<T>`, how a Pool<T> learns the memory an object
// owns: sizeof(T) plus the buffers it keeps (a string's or vector's capacity). A pool of
// growable buffers exists to keep that capacity, so budgets, statistics and
// Options::max_object_bytes count it, not sizeof(T).
//
//   - Defined for every type with `value_type` and `capacity()` (std::basic_string,
//     std::vector, absl::InlinedVector, absl::flat_hash_map and flat_hash_set, ...):
//     sizeof(T) + capacity() * sizeof(value_type), where a buffer inside the object itself
//     (a short string, an inlined vector: data() points into the object) adds nothing, and
//     std::vector<bool> counts bits.
//   - Specialise it for your own types:
//
//       template <>
//       struct syncpool::OwnedBytes<Message> {
//         static size_t Of(const Message& m) { return sizeof(m) + m.arena_bytes(); }
//       };
//
//   - A type for which OwnedBytes<T> has no `Of` (the primary template) is counted as
//     sizeof(T) per object, and its Pool pays nothing for the feature: the choice is made at
//     compile time.
//
// `Of` runs on the thread that calls Put() (after the reset hook) and on the thread that gets
// the object back or releases it; it must not throw and must return the same value for an
// object as long as it sits in the pool (the pool does not touch it there).

#ifndef SYNCPOOL_OWNED_BYTES_H_
#define SYNCPOOL_OWNED_BYTES_H_

#include <climits>
#include <concepts>
#include <cstddef>
#include <vector>

namespace syncpool {

// The primary template: nothing known beyond sizeof(T).
template <typename T>
struct OwnedBytes {};

namespace internal {

template <typename T>
concept HasCapacity = requires(const T& t) {
  typename T::value_type;
  { t.capacity() } -> std::convertible_to<size_t>;
};

template <typename T>
concept HasData = requires(const T& t) {
  { t.data() } -> std::convertible_to<const void*>;
};

}  // namespace internal

// Containers with a capacity.
template <internal::HasCapacity T>
struct OwnedBytes<T> {
  static size_t Of(const T& t) noexcept {
    if constexpr (internal::HasData<T>) {
      const auto* p = reinterpret_cast<const char*>(static_cast<const void*>(t.data()));
      const auto* self = reinterpret_cast<const char*>(&t);
      if (p >= self && p < self + sizeof(T)) return sizeof(T);  // Its own inline buffer.
    }
    return sizeof(T) + static_cast<size_t>(t.capacity()) * sizeof(typename T::value_type);
  }
};

// Bits, not bools.
template <typename A>
struct OwnedBytes<std::vector<bool, A>> {
  static size_t Of(const std::vector<bool, A>& v) noexcept {
    return sizeof(v) + (v.capacity() + CHAR_BIT - 1) / CHAR_BIT;
  }
};

// kKnowsOwnedBytes<T>
//
// Whether OwnedBytes<T> says what a T owns (a Pool<T> then counts it).
template <typename T>
inline constexpr bool kKnowsOwnedBytes = requires(const T& t) {
  { OwnedBytes<T>::Of(t) } -> std::convertible_to<size_t>;
};

}  // namespace syncpool

#endif  // SYNCPOOL_OWNED_BYTES_H_
