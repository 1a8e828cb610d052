// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Fake blocks for the tests of the layers that only move block pointers around (CpuCache,
// TransferStack): distinct addresses never dereferenced, and a check that blocks moved by
// several threads all ended up somewhere, each in one place.

#ifndef SYNCPOOL_TESTS_FAKE_BLOCKS_H_
#define SYNCPOOL_TESTS_FAKE_BLOCKS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace syncpool {
namespace testing {

// Rounds of a concurrent test of a layer: fewer under the sanitizers, which slow it down.
#ifdef SYNCPOOL_SANITIZER
inline constexpr int kLayerRounds = 5000;
#else
inline constexpr int kLayerRounds = 50000;
#endif

class FakeBlocks {
 public:
  explicit FakeBlocks(size_t n) : storage_(n) {}

  // FakeBlocks::operator[](), FakeBlocks::Range()
  //
  // Block `i`; blocks [from, to) in order.
  void* operator[](size_t i) { return &storage_[i]; }
  std::vector<void*> Range(size_t from, size_t to) {
    std::vector<void*> v;
    for (size_t i = from; i < to; ++i) v.push_back(&storage_[i]);
    return v;
  }

  // FakeBlocks::Index()
  //
  // Which block `p` is, or size() when it is none of them.
  size_t Index(const void* p) const {
    const auto* word = static_cast<const uint64_t*>(p);
    if (word < storage_.data() || word >= storage_.data() + storage_.size()) return size();
    return static_cast<size_t>(word - storage_.data());
  }

  size_t size() const { return storage_.size(); }

  // FakeBlocks::WhereNotOnce()
  //
  // What is wrong with `places` (each a list of blocks: a thread's hand, what a structure
  // held at the end) holding every block exactly once: a block held nowhere, held twice, or
  // a pointer that is no block; empty when nothing is.
  std::string WhereNotOnce(const std::vector<std::vector<void*>>& places) const {
    std::vector<int> seen(size(), 0);
    std::string problems;
    for (const std::vector<void*>& place : places) {
      for (void* p : place) {
        const size_t i = Index(p);
        if (i == size()) {
          problems += "a pointer that is no block; ";
        } else if (++seen[i] == 2) {
          problems += "block " + std::to_string(i) + " held twice; ";
        }
      }
    }
    for (size_t i = 0; i < size(); ++i) {
      if (seen[i] == 0) problems += "block " + std::to_string(i) + " lost; ";
    }
    return problems;
  }

 private:
  std::vector<uint64_t> storage_;
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_FAKE_BLOCKS_H_
