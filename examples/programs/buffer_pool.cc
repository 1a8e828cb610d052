// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A buffer pool in a worker loop: each worker takes a scratch buffer per job, fills it, and
// gives it back, so the buffers' memory is reused instead of allocated per job (Go's
// sync.Pool of bytes.Buffer). The reset hook clears a buffer but keeps its capacity.

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "syncpool/pool.h"

int main() {
  syncpool::Pool<std::string> buffers(
      [] {
        auto b = std::make_unique<std::string>();
        b->reserve(4096);
        return b;
      },
      [](std::string& b) { b.clear(); });

  constexpr int kWorkers = 4;
  constexpr int kJobs = 20000;
  std::vector<size_t> written(kWorkers);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      for (int job = 0; job < kJobs; ++job) {
        auto buffer = buffers.Get();  // Given back when `buffer` goes out of scope.
        for (int line = 0; line < 8; ++line) {
          buffer->append("job ").append(std::to_string(job)).append(" line\n");
        }
        written[w] += buffer->size();
      }
    });
  }
  for (std::thread& t : workers) t.join();

  const syncpool::Stats stats = buffers.GetStats();
  const uint64_t jobs = uint64_t{kWorkers} * kJobs;
  // Every Get was a hit or a miss (a miss made a new buffer); most were hits.
  if (stats.hits + stats.misses != jobs || stats.misses * 10 > jobs) {
    std::fprintf(stderr, "unexpected statistics:\n%s", stats.DebugString().c_str());
    return 1;
  }
  size_t total = 0;
  for (size_t n : written) total += n;
  std::printf("buffer_pool: %llu jobs, %llu new buffers, %zu bytes written\n",
              static_cast<unsigned long long>(jobs),
              static_cast<unsigned long long>(stats.misses), total);
  return 0;
}
