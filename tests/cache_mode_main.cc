// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Prints the mode a PoolResource and a Pool<T> with debug checks off run in, and why
// ("per-thread (glibc did not register rseq)"), after a round trip through each; for
// tests/valgrind_test.sh, which checks that under valgrind they run per thread.

#include <cstdio>
#include <memory>

#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"

int main() {
  syncpool::Options options;
  options.debug_checks = false;
  syncpool::PoolResource resource(options);
  resource.deallocate(resource.allocate(100), 100);
  syncpool::Pool<int> pool([] { return std::make_unique<int>(1); }, nullptr, options);
  pool.Get();
  for (const syncpool::Stats& s : {resource.GetStats(), pool.GetStats()}) {
    std::printf("%s (%s)\n", s.mode, s.mode_reason);
  }
  return 0;
}
