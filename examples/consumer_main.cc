// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The program every consumer in examples/ builds against an installed or referenced syncpool:
// one use of each face (Pool<T>, PoolResource under a std::pmr container, PoolAllocator<T>
// under a standard container), then one line that scripts/consumers.sh checks.

#include <cstdio>
#include <memory>
#include <memory_resource>
#include <numeric>
#include <string>
#include <vector>

#include "syncpool/pool.h"
#include "syncpool/pool_allocator.h"
#include "syncpool/pool_resource.h"
#include "syncpool/version.h"

int main() {
  // Pool<T>: a string handed out, filled, and given back (cleared) when the handle goes.
  syncpool::Pool<std::string> strings([] { return std::make_unique<std::string>(); },
                                      [](std::string& s) { s.clear(); });
  std::string word;
  {
    auto s = strings.Get();
    s->append("pooled");
    word = *s;
  }

  // PoolResource: the memory of a std::pmr::vector.
  syncpool::PoolResource resource;
  std::pmr::vector<int> pmr_numbers(&resource);
  for (int i = 1; i <= 100; ++i) pmr_numbers.push_back(i);

  // PoolAllocator<T>: a std::vector over the same resource, without pmr.
  std::vector<int, syncpool::PoolAllocator<int>> numbers{syncpool::PoolAllocator<int>(&resource)};
  numbers.assign(pmr_numbers.begin(), pmr_numbers.end());

  std::printf("syncpool %d.%d.%d: Pool<std::string> %s, PoolResource sum %d, PoolAllocator sum %d\n",
              SYNCPOOL_VERSION_MAJOR, SYNCPOOL_VERSION_MINOR, SYNCPOOL_VERSION_PATCH,
              word.c_str(), std::accumulate(pmr_numbers.begin(), pmr_numbers.end(), 0),
              std::accumulate(numbers.begin(), numbers.end(), 0));
  return 0;
}
