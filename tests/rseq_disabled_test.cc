// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The per-thread caches when the process turns restartable sequences off from its environment.
// Run by two targets (tests/BUILD.bazel), each starting the process with one setting:
//   - rseq_tunable_off_test: GLIBC_TUNABLES=glibc.pthread.rseq=0, so glibc registers no rseq
//     area (RseqRegistered() is false; its area is still there, unregistered) and CPU ids come
//     from sched_getcpu();
//   - rseq_env_off_test: SYNCPOOL_RSEQ=0, so syncpool leaves the registered area alone.
// Either way RseqUsable() is false, every cache runs per thread (and says why) even when its
// Options allow rseq, and the accounting scenario of churn.h keeps every block accounted for.

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "src/current_cpu.h"
#include "src/cpu.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "churn.h"

namespace syncpool {
namespace {


#ifdef SYNCPOOL_SANITIZER
constexpr int kIterations = 5000;
#else
constexpr int kIterations = 20000;
#endif

bool TunableOff() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr && std::strstr(tunables, "glibc.pthread.rseq=0") != nullptr;
}

bool EnvOff() {
  const char* env = std::getenv("SYNCPOOL_RSEQ");
  return env != nullptr && std::strcmp(env, "0") == 0;
}

TEST(RseqDisabledTest, StartedWithRseqTurnedOff) {
  ASSERT_TRUE(TunableOff() || EnvOff())
      << "run through //tests:rseq_tunable_off_test or //tests:rseq_env_off_test";
  if (TunableOff()) {
    // glibc read the tunable at startup and registered no area. The sequences still use
    // glibc's area (never the thread control block at offset 0), whose cpu_id then reads
    // RSEQ_CPU_ID_REGISTRATION_FAILED (-2) and fails them.
    EXPECT_FALSE(internal::RseqRegistered());
    EXPECT_FALSE(internal::RseqAvailable());
#if SYNCPOOL_HAVE_GLIBC_RSEQ
    EXPECT_NE(internal::g_rseq_area_offset, 0);
    EXPECT_EQ(internal::RseqCpuId(), -2);
#endif
  }
  EXPECT_FALSE(internal::RseqUsable());
}

TEST(RseqDisabledTest, CachesUsePerThreadCachesAndSayWhy) {
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.allow_rseq = true;  // Allowed, but not usable in this process.
  options.debug_checks = false;  // They would send every call to the slow paths.
  PoolResource resource(options);
  Pool<int> pool([] { return std::make_unique<int>(7); }, nullptr, options);
  EXPECT_FALSE(resource.uses_rseq());
  EXPECT_FALSE(pool.uses_rseq());
  // The per-thread mode, named with its reason in the statistics (and so in SYNCPOOL_STATS=1).
#if SYNCPOOL_RSEQ_FAST_PATH
  const char* why = TunableOff() ? "glibc did not register rseq" : "SYNCPOOL_RSEQ=0";
#elif defined(ABSL_HAVE_THREAD_SANITIZER)
  const char* why = "ThreadSanitizer";  // The first reason: no sequences are compiled in.
#else
  const char* why = "not x86-64 Linux with glibc";
#endif
  for (const Stats& s : {resource.GetStats(), pool.GetStats()}) {
    EXPECT_STREQ(s.mode, "per-thread");
    EXPECT_STREQ(s.mode_reason, why);
    EXPECT_NE(s.DebugString().find(std::string("caches: per-thread (") + why + ")"),
              std::string::npos)
        << s.DebugString();
  }
  // Their inline paths serve this thread from its own cache: a deallocate then an allocate of
  // the same size is a hit on the block just given back.
  void* p = resource.allocate(100);
  resource.deallocate(p, 100);
  const uint64_t hits = resource.GetStats().hits;
  EXPECT_EQ(resource.allocate(100), p);
  EXPECT_EQ(resource.GetStats().hits, hits + 1);
  resource.deallocate(p, 100);
  EXPECT_EQ(resource.GetStats().caches, 1u);
  // A cache that asks for the per-CPU mode gets the locked one here.
  Options per_cpu = options;
  per_cpu.mode = CacheMode::kPerCpu;
  PoolResource locked(per_cpu);
  EXPECT_STREQ(locked.GetStats().mode, "locked per-CPU");
  // CPU ids still come out in range, from sched_getcpu() where glibc has no area.
  const int cpu = internal::CurrentCpu();
  EXPECT_GE(cpu, 0);
  EXPECT_LT(cpu, internal::NumCpus());
}

constexpr testing::Request kPooled[] = {{16, 16}, {128, 16}, {2048, 16}};

// The accounting scenario of churn.h on the per-thread caches, with sweeps racing the workers.
TEST(RseqDisabledTest, ThreadsKeepEveryBlockAccountedFor) {
  testing::ChurnObject::ResetCounts();
  testing::TrackingResource upstream;
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.debug_checks = false;
  options.max_blocks_per_class = 4;  // Small caches: spills and shared moves happen.
  auto resource = std::make_unique<PoolResource>(options, &upstream);
  auto pool = std::make_unique<Pool<testing::ChurnObject>>(
      [] { return std::make_unique<testing::ChurnObject>(); }, nullptr, options);
  ASSERT_FALSE(resource->uses_rseq());
  ASSERT_FALSE(pool->uses_rseq());

  testing::ChurnShared shared;
  shared.pool = pool.get();
  shared.resource = resource.get();
  const testing::ChurnMix mix{.pooled = kPooled, .object_percent = 50, .max_window = 4};
  const int num_threads = 2 * static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  testing::RunWhileSweeping(&sweeper, num_threads, [&](int index) {
    testing::Churner churner(&shared, mix, index);
    for (int i = 0; i < kIterations && churner.Step(); ++i) {
    }
  });
  // In the per-thread mode the statistics are exact.
  EXPECT_GT(shared.resource->GetStats().hits, 0u);
  testing::ExpectEveryBlockAccounted(shared, upstream, sweeper);
  pool.reset();
  resource.reset();
  testing::ExpectUpstreamEmpty(upstream);
}

}  // namespace
}  // namespace syncpool
