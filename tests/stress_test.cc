// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Concurrency stress: many threads (four per hardware thread) get and put Pool<T> objects and
// allocate and deallocate PoolResource blocks of several size classes and alignments, while a
// background sweeper runs every millisecond and the test thread sweeps too: the accounting
// scenario of churn.h. Every object and block is checked for exclusive ownership (a global set
// of held pointers, and a pattern unique to its holder checked before it is given back); at the
// end every object and block is accounted for, and the upstream holds nothing once the pool and
// the resource are gone.
//
// Iterations per thread: STRESS_TEST_ITERATIONS when set, else a fixed default, smaller
// under sanitizers.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"
#include "churn.h"

namespace syncpool {
namespace {

using ::syncpool::testing::ChurnMix;
using ::syncpool::testing::ChurnObject;
using ::syncpool::testing::Churner;
using ::syncpool::testing::ChurnShared;
using ::syncpool::testing::Request;
using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

int IterationsPerThread() {
  if (const char* env = std::getenv("STRESS_TEST_ITERATIONS"); env != nullptr) {
    return std::max(1, std::atoi(env));
  }
#ifdef SYNCPOOL_SANITIZER
  return 20000;
#else
  return 60000;
#endif
}

// Pooled sizes and alignments.
constexpr Request kPooled[] = {{16, 8},     {16, 16},    {104, 8},   {104, 16},
                               {1000, 16},  {1000, 64},  {4096, 8},  {4096, 64},
                               {65536, 16}, {65536, 64}};
// Served by the upstream directly: above max_block_size, and over-aligned.
constexpr Request kDirect[] = {{300000, 16}, {256, 128}};

// Worker `index`'s iterations; with `fake_cpus`, it migrates between a few fake CPU ids while
// it holds blocks, so that they go back on another CPU than they came from.
void Work(ChurnShared* shared, int index, bool fake_cpus, int iterations) {
  const ChurnMix mix{.pooled = kPooled, .direct = kDirect, .object_percent = 40,
                     .direct_percent = 2, .max_window = 8};
  std::optional<ScopedFakeCpu> cpu;  // Outlives the churner: it gives back on the last id.
  const int num_cpus = ScopedFakeCpu::NumCpus();
  const int shared_ids = std::min(num_cpus, 4);  // Few ids: threads share caches.
  Churner churner(shared, mix, index);
  for (int i = 0; i < iterations; ++i) {
    if (fake_cpus && i % 64 == 0) {
      const int phase = i / 64;
      const int id = (index + phase) % shared_ids;
      cpu.reset();
      cpu.emplace(phase % 2 == 0 ? id : num_cpus - 1 - id);
    }
    if (!churner.Step()) break;
  }
}

void RunStress(bool fake_cpus, bool allow_rseq) {
  ChurnObject::ResetCounts();
  TrackingResource upstream;
  Sweeper sweeper(Sweeper::Options::Every(std::chrono::milliseconds(1)));
  Options options;
  options.sweeper = &sweeper;
  options.debug_checks = false;
  options.allow_rseq = allow_rseq;
  options.max_blocks_per_class = 16;  // Small caches: spills and shared moves happen often.
  auto resource = std::make_unique<PoolResource>(options, &upstream);
  // The locked fallback when forced; restartable sequences wherever the process can use them
  // and SYNCPOOL_MODE does not ask for per-thread caches (which it then gets).
  const char* env_mode = std::getenv("SYNCPOOL_MODE");
  const bool per_thread_asked = env_mode != nullptr && std::string(env_mode) == "perthread";
  EXPECT_EQ(resource->uses_rseq(), allow_rseq && !per_thread_asked && internal::RseqUsable());
  if (allow_rseq && (per_thread_asked || !internal::RseqUsable())) {
    EXPECT_STREQ(resource->GetStats().mode, "per-thread");
  }
  options.max_blocks_per_class = 4;  // Fewer objects than the threads hold: Puts spill.
  auto pool = std::make_unique<Pool<ChurnObject>>(
      [] { return std::make_unique<ChurnObject>(); }, nullptr, options);
  ChurnShared shared;
  shared.pool = pool.get();
  shared.resource = resource.get();

  const int num_threads = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int iterations = IterationsPerThread();
  // This thread sweeps too, every 2 ms, racing the background thread and the workers.
  testing::RunWhileSweeping(
      &sweeper, num_threads, [&](int t) { Work(&shared, t, fake_cpus, iterations); },
      std::chrono::milliseconds(2));
  // Exact figures need every thread that touches the caches stopped, the sweeper's included
  // (an epoch releases blocks before it adds them to the swept counts).
  sweeper.Stop();
  EXPECT_GT(shared.pool_gets.load(), 0u);
  EXPECT_GT(shared.pooled_allocations.load(), 0u);
  // With fake CPU ids no sequence runs (a live ScopedFakeCpu on every worker, all along):
  // every count is exact, the hits included.
  testing::ExpectEveryBlockAccounted(shared, upstream, sweeper, /*no_sequence_ran=*/fake_cpus);
  pool.reset();
  resource.reset();
  testing::ExpectUpstreamEmpty(upstream);
}

// Threads on the CPUs they run on, with the caches in the mode the process picks (Rseq:
// restartable sequences where usable, per-thread caches otherwise and in the _perthread twin)
// and in the locked fallback, forced.
class StressTest : public ::testing::TestWithParam<bool> {};

TEST_P(StressTest, ThreadsOnRealCpus) { RunStress(/*fake_cpus=*/false, GetParam()); }

INSTANTIATE_TEST_SUITE_P(BothPaths, StressTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Rseq" : "Locked";
                         });

// Threads migrating between fake CPU ids. A live ScopedFakeCpu turns the restartable sequences
// off for the whole process (g_rseq_cpu_limit is 0), so no sequence runs here: in the mode the
// process picks (SequencesOff), the rseq caches serve every operation as a remote operation on
// the fake CPU's cache (closed, fenced, under its lock), per-thread caches (the _perthread
// twin, or where the sequences are unusable) use each thread's column as ever; the locked
// fallback, forced, runs as with real CPUs. The sequences themselves run under migration in
// ThreadsOnRealCpus and tests/rseq_test.cc (sched_setaffinity).
class FakeCpuStressTest : public ::testing::TestWithParam<bool> {};

TEST_P(FakeCpuStressTest, ThreadsMigratingBetweenFakeCpus) {
  RunStress(/*fake_cpus=*/true, GetParam());
}

INSTANTIATE_TEST_SUITE_P(BothPaths, FakeCpuStressTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "SequencesOff" : "Locked";
                         });

}  // namespace
}  // namespace syncpool
