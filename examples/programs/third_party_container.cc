// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// PoolAllocator in a third-party container: Abseil's flat_hash_map (syncpool's own
// dependency, so a consumer of syncpool has it) and a std::list, both on one PoolResource,
// without std::pmr. The allocator is a standard allocator: any container that takes one works.

#include <cstdio>
#include <functional>
#include <list>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "syncpool/pool_allocator.h"
#include "syncpool/pool_resource.h"

int main() {
  syncpool::PoolResource memory;
  using Entry = std::pair<const int, std::string>;
  absl::flat_hash_map<int, std::string, absl::Hash<int>, std::equal_to<int>,
                      syncpool::PoolAllocator<Entry>>
      names{0, absl::Hash<int>(), std::equal_to<int>(), syncpool::PoolAllocator<Entry>(&memory)};
  std::list<int, syncpool::PoolAllocator<int>> order{syncpool::PoolAllocator<int>(&memory)};

  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 1000; ++i) {
      names.emplace(i, "name number " + std::to_string(i));
      order.push_back(i);
    }
    if (names.size() != 1000 || order.size() != 1000) return 1;
    names.clear();
    order.clear();
  }
  names.rehash(0);  // Give the table's memory back too.

  const syncpool::Stats stats = memory.GetStats();
  if (stats.in_use_bytes != 0 || stats.hits < stats.misses) {
    std::fprintf(stderr, "unexpected statistics:\n%s", stats.DebugString().c_str());
    return 1;
  }
  std::printf("third_party_container: 50 rounds of 1000 entries, %llu blocks from the caches\n",
              static_cast<unsigned long long>(stats.hits));
  return 0;
}
