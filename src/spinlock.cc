// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/spinlock.h"

#include <sched.h>

namespace syncpool {
namespace internal {

void SpinLock::LockSlow() {
  // Spin on a plain load (no cache-line ping-pong while the holder works), then try the
  // exchange again. After kSpins rounds the holder was probably preempted: yield to it.
  constexpr int kSpins = 64;
  for (int round = 0;; ++round) {
    if (!locked_.load(std::memory_order_relaxed) &&
        !locked_.exchange(true, std::memory_order_acquire)) {
      return;
    }
    if (round < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();
    }
  }
}

}  // namespace internal
}  // namespace syncpool
