// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/size_class.h
// -----------------------------------------------------------------------------
//
// The size classes of PoolResource. Not part of syncpool's API.
//
// Sizes up to 128 bytes come in steps of 16; above that every power-of-two range (2^k, 2^(k+1)]
// is cut into four classes of step 2^(k-2) (160, 192, 224, 256, 320, ...), so no block is more
// than 25 % larger than the request it serves. The classes go up to kMaxClassSize (1 MiB);
// a resource uses those up to its Options::max_block_size.
//
// Alignment: a request of alignment `a` (a power of two, at most kMaxPooledAlignment) is first
// rounded up to a nonzero multiple of `a` (PooledSize()). The class of such a rounded size is
// always a multiple of `a` (with four classes per doubling, the multiples of 2^(k-1) and 2^k
// in (2^k, 2^(k+1)] are class sizes), and every block of a class is obtained upstream with the
// class's natural alignment (its largest power-of-two divisor, capped at kMaxPooledAlignment).
// So a pooled block always satisfies the alignment of any request its class serves.
//
// The class of a size is found without a loop or a division: up to kSmallSizeLimit bytes by one
// load from a 257-byte table indexed by the size in 16-byte steps (class sizes are multiples
// of 16, so every size in a step has the same class), above it by a bit-width instruction and
// shifts.

#ifndef SYNCPOOL_INTERNAL_SIZE_CLASS_H_
#define SYNCPOOL_INTERNAL_SIZE_CLASS_H_

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace syncpool {
namespace internal {

inline constexpr size_t kMaxClassSize = size_t{1} << 20;
inline constexpr size_t kMaxPooledAlignment = 64;
// 8 classes of 16..128, then 4 per doubling from 2^8 to 2^20.
inline constexpr size_t kNumSizeClasses = 8 + 4 * 13;

// ComputeSizeClass()
//
// The class of `size` by arithmetic. REQUIRES: size <= kMaxClassSize. Size 0 maps to the
// smallest class.
constexpr size_t ComputeSizeClass(size_t size) {
  if (size <= 128) return size == 0 ? 0 : (size - 1) >> 4;
  const unsigned width = static_cast<unsigned>(std::bit_width(size - 1));  // size in (2^(w-1), 2^w]
  return 8 + (width - 8) * 4 + (((size - 1) >> (width - 3)) - 4);
}

// Sizes up to this many bytes find their class in kSmallSizeClasses.
inline constexpr size_t kSmallSizeLimit = 4096;

// kSmallSizeClasses[(size + 15) / 16] is the class of `size` for size <= kSmallSizeLimit.
inline constexpr auto kSmallSizeClasses = [] {
  std::array<uint8_t, kSmallSizeLimit / 16 + 1> classes{};
  for (size_t i = 0; i < classes.size(); ++i) {
    classes[i] = static_cast<uint8_t>(ComputeSizeClass(i * 16));
  }
  return classes;
}();

// The index of kSmallSizeClasses for `size`. REQUIRES: size <= kSmallSizeLimit.
constexpr size_t SmallSizeIndex(size_t size) { return (size + 15) >> 4; }

// SizeClassOf()
//
// REQUIRES: size <= kMaxClassSize. Size 0 maps to the smallest class.
constexpr size_t SizeClassOf(size_t size) {
  if (size <= kSmallSizeLimit) return kSmallSizeClasses[SmallSizeIndex(size)];
  return ComputeSizeClass(size);
}

// ClassSize()
//
// REQUIRES: cls < kNumSizeClasses.
constexpr size_t ClassSize(size_t cls) {
  if (cls < 8) return (cls + 1) * 16;
  const size_t k = (cls - 8) / 4 + 7;  // class in (2^k, 2^(k+1)]
  return (size_t{1} << k) + ((cls - 8) % 4 + 1) * (size_t{1} << (k - 2));
}

// ClassAlignment()
//
// The alignment every block of class `cls` has: its size's largest power-of-two divisor,
// capped at kMaxPooledAlignment.
constexpr size_t ClassAlignment(size_t cls) {
  const size_t size = ClassSize(cls);
  const size_t lowest = size & (~size + 1);
  return lowest < kMaxPooledAlignment ? lowest : kMaxPooledAlignment;
}

// RoundUpToAlignment()
//
// REQUIRES: align is a power of two; size + align does not overflow.
constexpr size_t RoundUpToAlignment(size_t size, size_t align) {
  return (size + align - 1) & ~(align - 1);
}

// PooledSize()
//
// The size a pooled request of `size` bytes and alignment `align` is served as: rounded up to
// a multiple of `align`, and at least `align` (so that a zero-byte request still gets a block
// of its alignment). REQUIRES: as RoundUpToAlignment().
constexpr size_t PooledSize(size_t size, size_t align) {
  const size_t rounded = RoundUpToAlignment(size, align);
  return rounded < align ? align : rounded;
}

// RequestClass()
//
// The class that serves a request of `size` bytes and alignment `align`: that of
// PooledSize(size, align), computed without the rounding when align <= 16, where it changes
// nothing (class sizes are multiples of 16, obtained with an alignment of at least 16).
// REQUIRES: as PooledSize(), and PooledSize(size, align) <= kMaxClassSize.
constexpr size_t RequestClass(size_t size, size_t align) {
  return SizeClassOf(align <= 16 ? size : PooledSize(size, align));
}

static_assert(ClassSize(kNumSizeClasses - 1) == kMaxClassSize);
static_assert(SizeClassOf(kMaxClassSize) == kNumSizeClasses - 1);

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_SIZE_CLASS_H_
