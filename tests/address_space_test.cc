// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Address space that follows use: a pool reserves for its caches what they hold, growing as
// they grow (cpu_cache.h), so that many pools used a little reserve a little; and where the
// address space runs out (ulimit -v), a cache stays smaller and nothing is lost.

#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "tests/counted.h"
#include "tests/cpu_affinity.h"

namespace syncpool {
namespace {

using ::syncpool::testing::AllowedCpus;
using ::syncpool::testing::Counted;
using ::syncpool::testing::SetAffinity;

// The process's VmSize (/proc/self/status), in bytes; 0 when it cannot be read.
uint64_t VmSizeBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  }
  return 0;
}

// Runs `fn` on a thread of its own pinned to each CPU this process may use, one after the
// other, so that a pool's cache of every CPU (or thread slot) gets used.
template <typename Fn>
void OnEveryCpu(Fn fn) {
  for (int cpu : AllowedCpus()) {
    std::thread([&] {
      SetAffinity({cpu});
      fn();
    }).join();
  }
}

constexpr uint64_t kMiB = uint64_t{1} << 20;

// 110 pools (10 PoolResources, 100 Pool<int>), each used once on every CPU, add at most
// 128 MiB of address space. The threads' own costs (stacks, the C library's arenas, the
// upstream's heaps) are paid before the first measurement by the same kind of thread; what
// is measured is the pools' caches, their regions and the sweeper's thread.
TEST(AddressSpaceTest, ManyPoolsUsedOnceReserveLittle) {
  OnEveryCpu([] {
    PoolResource warm;
    warm.deallocate(warm.allocate(100), 100);
    std::free(std::malloc(100));
  });
  const uint64_t before = VmSizeBytes();
  ASSERT_GT(before, 0u) << "no VmSize in /proc/self/status";
  std::vector<std::unique_ptr<PoolResource>> resources;
  for (int i = 0; i < 10; ++i) {
    resources.push_back(std::make_unique<PoolResource>());
    PoolResource& r = *resources.back();
    OnEveryCpu([&r] {
      void* small = r.allocate(100);
      void* page = r.allocate(4000);
      r.deallocate(page, 4000);
      r.deallocate(small, 100);
    });
  }
  std::vector<std::unique_ptr<Pool<int>>> pools;
  for (int i = 0; i < 100; ++i) {
    pools.push_back(std::make_unique<Pool<int>>([] { return std::make_unique<int>(0); }));
    Pool<int>& p = *pools.back();
    OnEveryCpu([&p] { auto h = p.Get(); });
  }
  const uint64_t added = VmSizeBytes() - before;
  std::printf("110 pools used on %zu CPUs added %.1f MiB of VmSize\n", AllowedCpus().size(),
              static_cast<double>(added) / kMiB);
  EXPECT_LE(added, 128 * kMiB);
  uint64_t reserved = 0;
  for (auto& r : resources) reserved += r->GetStats().reserved_bytes;
  for (auto& p : pools) reserved += p->GetStats().reserved_bytes;
  EXPECT_GT(reserved, 0u);
  EXPECT_LE(reserved, added);
}

// A cache grows its reserve as it grows: a Pool<int> that caches many objects reserves more
// than one that caches one, and still only for what it holds.
TEST(AddressSpaceTest, TheReserveGrowsWithWhatIsCached) {
  Options options;
  options.max_cached_bytes = 0;  // No budget: let it grow.
  Pool<int> pool([] { return std::make_unique<int>(0); }, nullptr, options);
  pool.Put(std::make_unique<int>(1));
  const uint64_t small = pool.GetStats().reserved_bytes;
  constexpr int kObjects = 100000;
  std::vector<std::unique_ptr<int>> objects;
  for (int i = 0; i < kObjects; ++i) objects.push_back(std::make_unique<int>(i));
  for (auto& o : objects) pool.Put(std::move(o));
  const Stats grown = pool.GetStats();
  EXPECT_GT(grown.reserved_bytes, small) << grown.DebugString();
  // Three arrays of pointers per class, reserved to twice what the growth needed at most,
  // per cache that grew; the cached objects are a lower bound for what grew.
  EXPECT_LE(grown.reserved_bytes, grown.caches * small + 3 * 2 * 2 * sizeof(void*) * kObjects)
      << grown.DebugString();
}

#if !defined(ABSL_HAVE_ADDRESS_SANITIZER) && !defined(ABSL_HAVE_THREAD_SANITIZER) && \
    !defined(ABSL_HAVE_MEMORY_SANITIZER)
struct Object : Counted<Object> {
  char bytes[48] = {};
};

// Ends the child with a message the death test shows.
[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "failed: %s\n", what);
  std::exit(1);
}

void SurviveTheLimit() {
  Options options;
  options.max_cached_bytes = 0;
  // Without the debug checks' record of cached objects, whose table cannot fail to grow
  // safely (what the checks cost under the limit is not what this test is about).
  options.debug_checks = false;
  Pool<Object> pool([] { return std::make_unique<Object>(); }, nullptr, options);
  pool.Put(std::make_unique<Object>());
  // Objects first, then a limit a little above what the process has: the caches can no
  // longer reserve what holding them all would take.
  constexpr int kObjects = 400000;
  std::vector<std::unique_ptr<Object>> objects;
  for (int i = 0; i < kObjects; ++i) objects.push_back(std::make_unique<Object>());
  rlimit limit{VmSizeBytes() + 2 * kMiB, RLIM_INFINITY};
  if (setrlimit(RLIMIT_AS, &limit) != 0) Fail("setrlimit");
  for (auto& o : objects) pool.Put(std::move(o));
  objects.clear();
  const Stats stats = pool.GetStats();
  // Not all cached (the caches could not grow to hold them), none lost.
  if (stats.cached_blocks() >= uint64_t{kObjects}) Fail("every object cached");
  if (Object::alive() != stats.cached_blocks()) Fail("objects lost or leaked");
  try {
    for (int i = 0; i < 1000; ++i) {
      if (!pool.Get()) Fail("a Get came back empty");
    }
  } catch (const std::bad_alloc&) {
    Fail("a Get of a cached object threw std::bad_alloc");
  }
  std::fprintf(stderr, "survived: %llu of %d objects cached\n",
               static_cast<unsigned long long>(stats.cached_blocks()), kObjects);
  std::exit(0);
}

// Under an address-space limit (ulimit -v) that the caches run into, a Pool<T> keeps
// working with smaller caches and loses no object (every object constructed is cached or
// destroyed). Runs in a child process (the limit is the child's).
TEST(AddressSpaceDeathTest, AtTheLimitCachesStaySmall) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(SurviveTheLimit(), ::testing::ExitedWithCode(0),
 "survived: [0-9]+ of 400000 objects cached");
}
#endif

}  // namespace
}  // namespace syncpool
