// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A monotonic arena per request over a PoolResource: the request's containers allocate by
// bumping a pointer (std::pmr::monotonic_buffer_resource) and never free one by one; the
// arena's chunks come from the PoolResource and go back to it, all at once, when the request
// ends, for the next request to reuse. docs/guide.md says when this beats the PoolResource
// alone.

#include <cstdio>
#include <memory_resource>
#include <string>
#include <vector>

#include "syncpool/pool_resource.h"

namespace {

// One request: builds a few hundred strings in vectors, answers with their total length.
size_t Serve(int request, std::pmr::memory_resource* chunks) {
  // The first chunk is 4 KiB; the arena grows geometrically from there.
  std::pmr::monotonic_buffer_resource arena(4096, chunks);
  std::pmr::vector<std::pmr::string> lines(&arena);
  for (int i = 0; i < 300; ++i) {
    lines.emplace_back("request " + std::to_string(request) + ", line " + std::to_string(i) +
                       ", padded beyond the small-string buffer");
  }
  size_t n = 0;
  for (const auto& l : lines) n += l.size();
  return n;
}  // The arena gives every chunk back to `chunks` here.

}  // namespace

int main() {
  syncpool::Options options;
  options.name = "arena chunks";
  syncpool::PoolResource chunks(options);
  size_t total = 0;
  constexpr int kRequests = 5000;
  for (int r = 0; r < kRequests; ++r) total += Serve(r, &chunks);

  const syncpool::Stats stats = chunks.GetStats();
  // After the first request, chunks come from the caches: the misses stay few.
  if (stats.in_use_bytes != 0 || stats.misses * 20 > stats.hits) {
    std::fprintf(stderr, "unexpected statistics:\n%s", stats.DebugString().c_str());
    return 1;
  }
  std::printf("monotonic_arena: %d requests, %zu bytes of strings, %llu chunk misses\n",
              kRequests, total, static_cast<unsigned long long>(stats.misses));
  return 0;
}
