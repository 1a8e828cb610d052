// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The fork generation (sweepable.h), in the base layer with the contract it belongs to: the
// sweeper's fork handler advances it, the caches read it.

#include "syncpool/internal/sweepable.h"

namespace syncpool {
namespace internal {

std::atomic<uint64_t> g_fork_generation{0};

}  // namespace internal
}  // namespace syncpool
