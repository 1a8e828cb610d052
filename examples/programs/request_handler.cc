// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// std::pmr containers in a request handler: every container a request builds takes its memory
// from one PoolResource, shared by the threads that serve requests, so the blocks one request
// frees serve the next one on the same CPU.

#include <cstdio>
#include <map>
#include <memory_resource>
#include <string>
#include <thread>
#include <vector>

#include "syncpool/pool_resource.h"

namespace {

// Parses "key=value&key=value" into a map and answers with the sum of the values' lengths.
size_t Handle(const std::string& query, std::pmr::memory_resource* memory) {
  std::pmr::map<std::pmr::string, std::pmr::string> params(memory);
  std::pmr::vector<std::pmr::string> parts(memory);
  std::pmr::string part(memory);
  for (char c : query) {
    if (c == '&') {
      parts.push_back(part);
      part.clear();
    } else {
      part.push_back(c);
    }
  }
  parts.push_back(part);
  for (const auto& p : parts) {
    const size_t eq = p.find('=');
    params.emplace(p.substr(0, eq), eq == std::pmr::string::npos ? "" : p.substr(eq + 1));
  }
  size_t n = 0;
  for (const auto& [key, value] : params) n += value.size();
  return n;
}

}  // namespace

int main() {
  syncpool::Options options;
  options.name = "requests";  // Names the pool in statistics and misuse messages.
  syncpool::PoolResource memory(options);

  const std::string query =
      "user=someone_with_a_long_name&session=0123456789abcdef0123456789abcdef&"
      "path=/a/fairly/long/path/to/some/resource&lang=en";
  constexpr int kThreads = 2;
  constexpr int kRequests = 20000;
  std::vector<size_t> answers(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRequests; ++r) answers[t] += Handle(query, &memory);
    });
  }
  for (std::thread& t : threads) t.join();

  const size_t expected = size_t{kThreads} * kRequests * Handle(query, &memory);
  const size_t got = answers[0] + answers[1];
  const syncpool::Stats stats = memory.GetStats();
  if (got != expected || stats.in_use_bytes != 0 || stats.hits < stats.misses) {
    std::fprintf(stderr, "answers %zu, expected %zu\n%s", got, expected,
                 stats.DebugString().c_str());
    return 1;
  }
  std::printf("request_handler: %d requests, %llu blocks from the caches, %llu misses\n",
              kThreads * kRequests, static_cast<unsigned long long>(stats.hits),
              static_cast<unsigned long long>(stats.misses));
  return 0;
}
