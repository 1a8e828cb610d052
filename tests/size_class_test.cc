// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of the size classes: every size up to kMaxClassSize maps to the tightest class that
// holds it, the waste stays under 25 % above 128 bytes, and a request rounded up to its
// alignment always lands in a class whose blocks have that alignment.

#include "syncpool/internal/size_class.h"

#include <bit>
#include <cstddef>

#include "gtest/gtest.h"

namespace syncpool {
namespace internal {
namespace {

inline constexpr size_t kAlignments[] = {1, 2, 4, 8, 16, 32, 64};

// True when SizeClassOf() picks the tightest class for every size in [first, last].
constexpr bool TightForSizes(size_t first, size_t last) {
  for (size_t size = first; size <= last; ++size) {
    const size_t cls = SizeClassOf(size);
    if (cls >= kNumSizeClasses || ClassSize(cls) < size) return false;
    if (cls > 0 && ClassSize(cls - 1) >= size) return false;
  }
  return true;
}

// True when every class is its own class's size's class.
constexpr bool ClassesRoundTrip() {
  for (size_t cls = 0; cls < kNumSizeClasses; ++cls) {
    if (SizeClassOf(ClassSize(cls)) != cls) return false;
  }
  return true;
}

// The lookup works at compile time, as a constexpr function must.
static_assert(kNumSizeClasses == 60);
static_assert(SizeClassOf(0) == 0 && SizeClassOf(1) == 0 && SizeClassOf(16) == 0);
static_assert(SizeClassOf(17) == 1 && SizeClassOf(128) == 7 && SizeClassOf(129) == 8);
static_assert(ClassSize(0) == 16 && ClassSize(7) == 128);
static_assert(ClassSize(8) == 160 && ClassSize(9) == 192 && ClassSize(10) == 224);
static_assert(ClassSize(11) == 256 && ClassSize(12) == 320);
static_assert(ClassSize(SizeClassOf(1000)) == 1024);
static_assert(ClassSize(SizeClassOf(kMaxClassSize - 1)) == kMaxClassSize);
static_assert(ClassAlignment(0) == 16 && ClassAlignment(SizeClassOf(48)) == 16);
static_assert(ClassAlignment(SizeClassOf(160)) == 32);
static_assert(ClassAlignment(SizeClassOf(192)) == 64);
static_assert(ClassAlignment(kNumSizeClasses - 1) == kMaxPooledAlignment);
static_assert(RoundUpToAlignment(0, 64) == 0 && RoundUpToAlignment(1, 64) == 64);
static_assert(RoundUpToAlignment(64, 64) == 64 && RoundUpToAlignment(65, 64) == 128);
static_assert(RoundUpToAlignment(13, 1) == 13 && RoundUpToAlignment(13, 8) == 16);
static_assert(TightForSizes(0, 2048));
static_assert(ClassesRoundTrip());

TEST(SizeClassTest, ClassSizesIncreaseInStepsOfSixteenAndEndAtTheMaximum) {
  EXPECT_EQ(ClassSize(0), 16u);
  EXPECT_EQ(ClassSize(kNumSizeClasses - 1), kMaxClassSize);
  for (size_t cls = 0; cls < kNumSizeClasses; ++cls) {
    EXPECT_EQ(ClassSize(cls) % 16, 0u) << "class " << cls;
    if (cls > 0) {
      EXPECT_GT(ClassSize(cls), ClassSize(cls - 1)) << "class " << cls;
    }
  }
}

TEST(SizeClassTest, FourClassesPerDoublingAbove128) {
  for (size_t k = 7; (size_t{1} << k) < kMaxClassSize; ++k) {
    const size_t low = size_t{1} << k;  // The classes in (low, 2 * low].
    const size_t first = SizeClassOf(low + 1);
    ASSERT_LE(first + 3, kNumSizeClasses - 1) << "k " << k;
    EXPECT_EQ(SizeClassOf(2 * low), first + 3) << "k " << k;
    for (size_t j = 0; j < 4; ++j) {
      EXPECT_EQ(ClassSize(first + j), low + (j + 1) * (low / 4)) << "k " << k;
    }
  }
}

TEST(SizeClassTest, EverySizeMapsToTheTightestClass) {
  for (size_t size = 0; size <= kMaxClassSize; ++size) {
    const size_t cls = SizeClassOf(size);
    ASSERT_LT(cls, kNumSizeClasses) << "size " << size;
    ASSERT_GE(ClassSize(cls), size) << "size " << size;
    if (cls > 0) {
      ASSERT_LT(ClassSize(cls - 1), size) << "size " << size;
    }
  }
}

TEST(SizeClassTest, EveryClassIsTheClassOfItsSize) {
  for (size_t cls = 0; cls < kNumSizeClasses; ++cls) {
    EXPECT_EQ(SizeClassOf(ClassSize(cls)), cls);
    if (cls + 1 < kNumSizeClasses) {
      EXPECT_EQ(SizeClassOf(ClassSize(cls) + 1), cls + 1);
    }
  }
}

TEST(SizeClassTest, WasteIsUnderSixteenBytesUpTo128) {
  for (size_t size = 1; size <= 128; ++size) {
    EXPECT_LT(ClassSize(SizeClassOf(size)) - size, 16u) << "size " << size;
  }
}

TEST(SizeClassTest, WasteIsAtMostAQuarterAbove128) {
  for (size_t size = 129; size <= kMaxClassSize; ++size) {
    // ClassSize <= 1.25 * size, in integers.
    ASSERT_LE(ClassSize(SizeClassOf(size)) * 4, size * 5) << "size " << size;
  }
}

TEST(SizeClassTest, ClassAlignmentIsTheLowestPowerOfTwoDivisorCapped) {
  for (size_t cls = 0; cls < kNumSizeClasses; ++cls) {
    const size_t size = ClassSize(cls);
    const size_t align = ClassAlignment(cls);
    EXPECT_TRUE(std::has_single_bit(align)) << "class " << cls;
    EXPECT_EQ(size % align, 0u) << "class " << cls;
    EXPECT_LE(align, kMaxPooledAlignment) << "class " << cls;
    EXPECT_GE(align, 16u) << "class " << cls;
    // Capped, or the largest power of two that divides the size.
    if (align < kMaxPooledAlignment) {
      EXPECT_NE(size % (2 * align), 0u) << "class " << cls;
    }
  }
}

TEST(SizeClassTest, RoundUpToAlignmentGivesTheNextMultiple) {
  for (const size_t align : kAlignments) {
    for (size_t size = 0; size <= 4096; ++size) {
      const size_t rounded = RoundUpToAlignment(size, align);
      ASSERT_EQ(rounded % align, 0u) << size << " aligned to " << align;
      ASSERT_GE(rounded, size) << size << " aligned to " << align;
      ASSERT_LT(rounded - size, align) << size << " aligned to " << align;
    }
  }
}

// The guarantee PoolResource relies on: a pooled block of the class of PooledSize() is aligned
// enough for the request, for every pooled alignment and every size, zero included (zero
// rounds to zero, so PooledSize() serves it as one alignment's worth).
TEST(SizeClassTest, RoundedRequestsLandInSufficientlyAlignedClasses) {
  for (const size_t align : kAlignments) {
    ASSERT_EQ(PooledSize(0, align), align);
    for (size_t size = 0; size <= kMaxClassSize; ++size) {
      const size_t rounded = PooledSize(size, align);
      ASSERT_LE(rounded, kMaxClassSize) << size << " aligned to " << align;
      const size_t cls = SizeClassOf(rounded);
      ASSERT_GE(ClassSize(cls), size) << size << " aligned to " << align;
      ASSERT_EQ(ClassSize(cls) % align, 0u) << size << " aligned to " << align;
      ASSERT_GE(ClassAlignment(cls), align) << size << " aligned to " << align;
    }
  }
}

// Rounding up to the alignment never costs more than the alignment itself: the class is
// still the tightest one that is a multiple of the alignment.
TEST(SizeClassTest, RoundedRequestsLandInTheTightestAlignedClass) {
  for (const size_t align : kAlignments) {
    for (size_t size = 1; size <= 8192; ++size) {
      const size_t cls = SizeClassOf(RoundUpToAlignment(size, align));
      for (size_t smaller = 0; smaller < cls; ++smaller) {
        const bool fits = ClassSize(smaller) >= size && ClassSize(smaller) % align == 0;
        ASSERT_FALSE(fits) << size << " aligned to " << align << " could use class "
                           << smaller << " instead of " << cls;
      }
    }
  }
}

// The table of the small sizes agrees with the arithmetic for every size it covers, and the
// first size past it takes the arithmetic.
TEST(SizeClassTest, SmallSizeTableMatchesTheArithmetic) {
  for (size_t size = 0; size <= kSmallSizeLimit + 64; ++size) {
    ASSERT_EQ(SizeClassOf(size), ComputeSizeClass(size)) << "size " << size;
  }
}

// RequestClass() skips the rounding for alignments up to 16; the class must be the same as
// with it, for every size and alignment, and the block must satisfy the request.
TEST(SizeClassTest, RequestClassEqualsTheClassOfThePooledSize) {
  for (const size_t align : kAlignments) {
    for (size_t size = 0; size <= 3 * kSmallSizeLimit; ++size) {
      const size_t cls = RequestClass(size, align);
      ASSERT_EQ(cls, SizeClassOf(PooledSize(size, align))) << size << " aligned to " << align;
      ASSERT_GE(ClassAlignment(cls), align) << size << " aligned to " << align;
    }
  }
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
