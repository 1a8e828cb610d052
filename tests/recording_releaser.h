// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A BlockReleaser for tests: records every block released, with its class, in order.

#ifndef SYNCPOOL_TESTS_RECORDING_RELEASER_H_
#define SYNCPOOL_TESTS_RECORDING_RELEASER_H_

#include <cstddef>
#include <utility>
#include <vector>

#include "src/block_cache.h"

namespace syncpool {
namespace testing {

// Records every block released, with its class, in order.
class RecordingReleaser final : public internal::BlockReleaser {
 public:
  void Release(size_t cls, void* const* blocks, size_t n) override {
    ++calls_;
    for (size_t i = 0; i < n; ++i) released_.emplace_back(cls, blocks[i]);
  }

  const std::vector<std::pair<size_t, void*>>& released() const { return released_; }
  int calls() const { return calls_; }

  // How many times `block` of class `cls` was released.
  int TimesReleased(size_t cls, void* block) const {
    int n = 0;
    for (const auto& [c, b] : released_) n += (c == cls && b == block) ? 1 : 0;
    return n;
  }

 private:
  std::vector<std::pair<size_t, void*>> released_;
  int calls_ = 0;
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_RECORDING_RELEASER_H_
