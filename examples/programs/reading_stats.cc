// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Reading statistics: one pool's Stats (what it caches, what it holds upstream and its peak,
// each size class), and every live pool at once with LiveStats() and PrintStats(), as an
// admin endpoint of a running server would. docs/guide.md maps what they show to the option
// to change.

#include <cstdio>
#include <memory>
#include <vector>

#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"

int main() {
  syncpool::Options options;
  options.name = "parser";
  syncpool::PoolResource parser(options);
  options.name = "ints";
  syncpool::Pool<int> ints([] { return std::make_unique<int>(0); }, nullptr, options);

  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) blocks.push_back(parser.allocate(48));
  { auto one = ints.Get(); }

  const syncpool::Stats busy = parser.GetStats();
  for (void* b : blocks) parser.deallocate(b, 48);
  const syncpool::Stats idle = parser.GetStats();

  // In use while the blocks were held, none after; the peak stays.
  if (busy.in_use_bytes < 1000 * 48 || idle.in_use_bytes != 0 ||
      idle.peak_upstream_bytes < busy.in_use_bytes) {
    std::fprintf(stderr, "%s\n%s", busy.DebugString().c_str(), idle.DebugString().c_str());
    return 1;
  }
  int classes_used = 0;
  for (const syncpool::ClassStats& c : busy.classes) classes_used += c.in_use_blocks != 0;

  // Every live pool: this program's two (PoolResource::Default() too, once it is used).
  const std::vector<syncpool::Stats> all = syncpool::LiveStats();
  if (all.size() < 2) return 1;
  syncpool::PrintStats(stderr);  // The same, as text.

  std::printf("reading_stats: %s held %llu bytes at most, %d class in use; %zu live pools\n",
              busy.label.c_str(), static_cast<unsigned long long>(idle.peak_upstream_bytes),
              classes_used, all.size());
  return 0;
}
