// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// What the tests write into the memory they hold and check before giving it back: a pattern of
// words unique to a holder and an acquisition (its tag), so that a second holder writing into
// the same block, or a block handed out while still cached, shows as a word that changed. And
// the alignment of what a resource returned.

#ifndef SYNCPOOL_TESTS_PATTERN_H_
#define SYNCPOOL_TESTS_PATTERN_H_

#include <cstddef>
#include <cstdint>

namespace syncpool {
namespace testing {

// Word `i` of the pattern of `tag`: distinct tags give distinct words (the multiplier is odd).
inline uint64_t PatternWord(uint64_t tag, size_t i) { return tag * 0x9e3779b97f4a7c15 + i; }

// Writes the pattern of `tag` into `words[0, n)`.
inline void FillPattern(uint64_t* words, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; ++i) words[i] = PatternWord(tag, i);
}

// The index of the first of `words[0, n)` that lost the pattern of `tag`, or n when it is intact.
inline size_t FirstMismatch(const uint64_t* words, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; ++i) {
    if (words[i] != PatternWord(tag, i)) return i;
  }
  return n;
}

// Whether `p` is a multiple of `alignment`.
inline bool IsAligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_PATTERN_H_
