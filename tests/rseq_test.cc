// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The per-CPU caches under what interrupts restartable sequences, on both per-CPU paths
// (restartable sequences where the process can use them, and the locked fallback):
//   - threads migrating between real CPUs (sched_setaffinity) while they hold blocks;
//   - timer signals delivered to every worker thread every few microseconds;
//   - a CPU whose cache holds blocks but on which no thread of the process may run any more
//     (sweeps, Trim() and Clear() must still empty it);
//   - a miss on one real CPU while another real CPU's cache holds victims: it takes nothing
//     from that cache, and the next epoch drains it (nobody used that CPU).
// Every block is accounted for: no pointer is handed to two holders at once, a pattern written
// by its holder is intact when it is given back, and the upstream holds nothing at the end.

#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "churn.h"
#include "cpu_affinity.h"
#include "recording_releaser.h"
#include "src/block_cache.h"

namespace syncpool {
namespace {

using ::syncpool::testing::AllowedCpus;
using ::syncpool::testing::ChurnMix;
using ::syncpool::testing::ChurnObject;
using ::syncpool::testing::Churner;
using ::syncpool::testing::ChurnShared;
using ::syncpool::testing::ExpectEveryBlockAccounted;
using ::syncpool::testing::ExpectUpstreamEmpty;
using ::syncpool::testing::PinTo;
using ::syncpool::testing::Request;
using ::syncpool::testing::RunWhileSweeping;
using ::syncpool::testing::ScopedAffinity;
using ::syncpool::testing::SetAffinity;
using ::syncpool::testing::TrackingResource;

#ifdef SYNCPOOL_SANITIZER
constexpr int kIterations = 20000;
#else
constexpr int kIterations = 60000;
#endif
// Each signal costs the interrupted thread a few microseconds: the timer test runs fewer
// iterations than the others so that the file still runs in seconds.
constexpr int kTimerIterations = kIterations / 4;
constexpr long kTimerPeriodNs = 20000;

// Four size classes, default alignment.
constexpr Request kSizes[] = {{16, 16}, {64, 16}, {256, 16}, {1024, 16}};
constexpr ChurnMix kMix{.pooled = kSizes, .object_percent = 50, .max_window = 6};

// An upstream, a sweeper without a thread, a resource and a pool over them, and what the
// workers did with them.
struct Fixture {
  explicit Fixture(bool allow_rseq, uint32_t max_blocks = 8) {
    ChurnObject::ResetCounts();
    Options options;
    options.sweeper = &sweeper;
    options.debug_checks = false;  // Keep the per-CPU fast paths.
    options.allow_rseq = allow_rseq;
    options.mode = CacheMode::kPerCpu;  // Per-CPU caches, whatever SYNCPOOL_MODE says.
    options.max_blocks_per_class = max_blocks;
    // One block per miss: the tests follow each block from where it was placed.
    options.refill_bytes = 0;
    resource = std::make_unique<PoolResource>(options, &upstream);
    pool = std::make_unique<Pool<ChurnObject>>([] { return std::make_unique<ChurnObject>(); },
                                               nullptr, options);
    shared.pool = pool.get();
    shared.resource = resource.get();
    const bool rseq = allow_rseq && internal::RseqUsable();
    EXPECT_EQ(resource->uses_rseq(), rseq);
    EXPECT_EQ(pool->uses_rseq(), rseq);
  }

  // Checks the statistics against the operations, sweeps everything out, destroys the pool
  // and the resource, and checks the upstream holds nothing.
  void ExpectAllAccounted() {
    ExpectEveryBlockAccounted(shared, upstream, sweeper);
    ExpectUpstreamEmptyAfterDestruction();
  }

  void ExpectUpstreamEmptyAfterDestruction() {
    pool.reset();
    resource.reset();
    EXPECT_EQ(ChurnObject::alive(), 0u);
    ExpectUpstreamEmpty(upstream);
  }

  TrackingResource upstream;
  Sweeper sweeper{Sweeper::Options::Manual()};
  std::unique_ptr<PoolResource> resource;
  std::unique_ptr<Pool<ChurnObject>> pool;
  ChurnShared shared;
};

int NumWorkers() {
  return 2 * static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
}

class RseqTest : public ::testing::TestWithParam<bool> {};

TEST_P(RseqTest, ThreadsMigratingBetweenRealCpus) {
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask";
  Fixture f(GetParam());
  std::atomic<uint64_t> migrations{0};
  std::atomic<uint64_t> pin_failures{0};
  RunWhileSweeping(&f.sweeper, NumWorkers(), [&](int index) {
    ScopedAffinity restore;
    std::minstd_rand rng(index + 1);
    size_t next = static_cast<size_t>(index) % cpus.size();
    int until_move = 0;
    // Gives everything back before the affinity is restored.
    Churner churner(&f.shared, kMix, index);
    for (int i = 0; i < kIterations; ++i) {
      if (--until_move <= 0) {
        // Move while holding blocks: they go back on another CPU than they came from.
        (PinTo(cpus[next]) ? migrations : pin_failures).fetch_add(1);
        next = (next + 1) % cpus.size();
        until_move = 100 + static_cast<int>(rng() % 400);
      }
      if (!churner.Step()) break;
    }
  });
  EXPECT_EQ(pin_failures.load(), 0u);
  EXPECT_GE(migrations.load(), 2u * static_cast<uint64_t>(NumWorkers()));
  f.ExpectAllAccounted();
}

// Counts SIGUSR1 deliveries: in total, and per worker through the timer's sigev_value.
std::atomic<uint64_t> g_signals{0};

void OnSignal(int, siginfo_t* info, void*) {
  g_signals.fetch_add(1, std::memory_order_relaxed);
  if (info->si_code == SI_TIMER && info->si_value.sival_ptr != nullptr) {
    static_cast<std::atomic<uint64_t>*>(info->si_value.sival_ptr)
        ->fetch_add(1, std::memory_order_relaxed);
  }
}

// A timer that sends SIGUSR1 to the calling thread every `period_ns` until destroyed.
class ThreadTimer {
 public:
  ThreadTimer(long period_ns, std::atomic<uint64_t>* count) {
    sigevent sev = {};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_ptr = count;
#ifdef sigev_notify_thread_id
    sev.sigev_notify_thread_id = gettid();
#else
    sev._sigev_un._tid = gettid();
#endif
    created_ = timer_create(CLOCK_MONOTONIC, &sev, &id_) == 0;
    if (!created_) return;
    itimerspec spec = {};
    spec.it_value.tv_nsec = period_ns;
    spec.it_interval.tv_nsec = period_ns;
    ok_ = timer_settime(id_, 0, &spec, nullptr) == 0;
  }
  ThreadTimer(const ThreadTimer&) = delete;
  ThreadTimer& operator=(const ThreadTimer&) = delete;
  ~ThreadTimer() {
    if (created_) {
      EXPECT_EQ(timer_delete(id_), 0);
    }
  }

  bool ok() const { return ok_; }

 private:
  timer_t id_ = {};
  bool created_ = false;
  bool ok_ = false;
};

TEST_P(RseqTest, TimerSignalsInterruptEveryWorker) {
  struct sigaction action = {};
  action.sa_sigaction = &OnSignal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  struct sigaction previous = {};
  ASSERT_EQ(sigaction(SIGUSR1, &action, &previous), 0);
  g_signals = 0;

  // Each worker runs its iterations and then on until it has been interrupted this often.
  constexpr uint64_t kMinSignalsPerWorker = 100;
  // More workers than CPUs: threads are also preempted by each other between signals.
  const int num_workers = NumWorkers();
  std::vector<std::atomic<uint64_t>> signals(static_cast<size_t>(num_workers));
  Fixture f(GetParam());
  RunWhileSweeping(&f.sweeper, num_workers, [&](int index) {
    std::atomic<uint64_t>* mine = &signals[static_cast<size_t>(index)];
    Churner churner(&f.shared, kMix, index);
    ThreadTimer timer(kTimerPeriodNs, mine);
    if (!timer.ok()) {
      ADD_FAILURE() << "timer_create/timer_settime failed";
      return;
    }
    for (int i = 0; i < kTimerIterations || mine->load(std::memory_order_relaxed) <
                                                kMinSignalsPerWorker; ++i) {
      if (!churner.Step() || i >= 1000 * kTimerIterations) break;
    }
  });  // Each timer is deleted before its worker gives its blocks back and exits.
  ASSERT_EQ(sigaction(SIGUSR1, &previous, nullptr), 0);

  for (int i = 0; i < num_workers; ++i) {
    EXPECT_GE(signals[static_cast<size_t>(i)].load(), kMinSignalsPerWorker) << "worker " << i;
  }
  EXPECT_GE(g_signals.load(), kMinSignalsPerWorker * static_cast<uint64_t>(num_workers));
  f.ExpectAllAccounted();
}

// What a thread pinned to one CPU made and gave back there: `n` blocks of 64 bytes from the
// resource and `n` objects from the pool, all of which then sit in that CPU's cache.
struct Placed {
  std::set<void*> blocks;
  std::set<void*> objects;
};

Placed PlaceOnCpu(Fixture& f, int cpu, int n) {
  Placed placed;
  std::thread([&] {
    ASSERT_TRUE(PinTo(cpu));
    std::vector<Pool<ChurnObject>::Handle> objects;
    for (int i = 0; i < n; ++i) {
      placed.blocks.insert(f.resource->allocate(64));
      objects.push_back(f.pool->Get());
      placed.objects.insert(objects.back().get());
    }
    for (void* b : placed.blocks) f.resource->deallocate(b, 64);
    objects.clear();
    EXPECT_EQ(sched_getcpu(), cpu);
  }).join();
  EXPECT_EQ(placed.blocks.size(), static_cast<size_t>(n));
  EXPECT_EQ(placed.objects.size(), static_cast<size_t>(n));
  return placed;
}

TEST_P(RseqTest, CacheOfACpuNoThreadMayRunOnIsEmptied) {
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask";
  const int last = cpus.back();
  ScopedAffinity restore;
  constexpr uint64_t kBlocks = 32;
  Fixture f(GetParam(), /*max_blocks=*/kBlocks);
  auto expect_cached = [&](uint64_t n) {
    EXPECT_EQ(f.resource->GetStats().cached_blocks(), n);
    EXPECT_EQ(f.pool->GetStats().cached_blocks(), n);
    // The resource's 64-byte blocks live in one span, which goes upstream once all are free.
    const Stats rs = f.resource->GetStats();
    EXPECT_EQ(rs.span_block_bytes - rs.span_free_bytes, n * 64);
    EXPECT_EQ(f.upstream.live_blocks(), n == 0 ? 0u : 1u);
    EXPECT_EQ(f.upstream.live_bytes(), rs.span_bytes);
    EXPECT_EQ(ChurnObject::alive(), n);
  };

  // The thread that placed them is gone and this one may no longer run on `last`: two epochs
  // release everything there.
  PlaceOnCpu(f, last, kBlocks);
  expect_cached(kBlocks);
  ASSERT_TRUE(SetAffinity({cpus.begin(), cpus.end() - 1}));
  ASSERT_NE(sched_getcpu(), last);
  f.sweeper.SweepNow();
  f.sweeper.SweepNow();
  expect_cached(0);

  // Trim() and Clear() empty it at once.
  PlaceOnCpu(f, last, kBlocks);
  expect_cached(kBlocks);
  f.resource->Trim();
  f.pool->Clear();
  expect_cached(0);
  EXPECT_EQ(ChurnObject::constructed(), 2 * kBlocks);

  // And so does destroying the resource and the pool.
  PlaceOnCpu(f, last, kBlocks);
  expect_cached(kBlocks);
  f.ExpectUpstreamEmptyAfterDestruction();
}

TEST_P(RseqTest, AMissLeavesAnotherRealCpusCacheAloneAndTheEpochsDrainIt) {
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask";
  if (GetParam() && internal::RseqUsable() && internal::RseqIndexedByConcurrencyId()) {
    // Columns follow threads, not CPUs: the second thread may get the first one's column
    // (rseq_test_cpuid runs this with the columns by CPU id).
    GTEST_SKIP() << "the rseq caches' columns are concurrency ids here";
  }
  constexpr int kBlocks = 8;
  Fixture f(GetParam(), /*max_blocks=*/kBlocks);
  const Placed placed = PlaceOnCpu(f, cpus.back(), kBlocks);
  const uint64_t upstream_allocations = f.upstream.allocations();
  f.sweeper.SweepNow();  // The placed blocks become victims on their CPU.

  // Another CPU misses: it makes new blocks and objects and takes nothing from the CPU that
  // holds the placed ones (no remote operation on an ordinary allocation).
  Placed got;
  std::vector<Pool<ChurnObject>::Handle> objects;
  std::thread([&] {
    ASSERT_TRUE(PinTo(cpus.front()));
    for (int i = 0; i < kBlocks; ++i) {
      got.blocks.insert(f.resource->allocate(64));
      objects.push_back(f.pool->Get());
      got.objects.insert(objects.back().get());
    }
  }).join();
  for (void* b : got.blocks) EXPECT_FALSE(placed.blocks.contains(b));
  for (void* o : got.objects) EXPECT_FALSE(placed.objects.contains(o));
  // The resource's blocks came from a new span, of the spans of that CPU's own shard.
  EXPECT_EQ(f.upstream.allocations(), upstream_allocations + 1);
  EXPECT_EQ(ChurnObject::constructed(), uint64_t{2 * kBlocks});
  EXPECT_EQ(f.resource->GetStats().misses, uint64_t{2 * kBlocks});
  EXPECT_EQ(f.resource->GetStats().cached_blocks(), uint64_t{kBlocks});
  EXPECT_EQ(f.pool->GetStats().cached_blocks(), uint64_t{kBlocks});

  // Nobody used that CPU during the epoch: the next one drains it.
  f.sweeper.SweepNow();
  EXPECT_EQ(f.resource->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(f.pool->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(ChurnObject::alive(), uint64_t{kBlocks});

  for (void* b : got.blocks) f.resource->deallocate(b, 64);
  objects.clear();
  f.ExpectUpstreamEmptyAfterDestruction();
}

// The batch sequences on a real CPU (RseqPushBatch() and RseqPopBatchToMove(), percpu_rseq.h).
// A thread pinned to one CPU hands the cache a batch (BlockCache::PutBatch()): as many as fit
// go on the stack in one sequence, in order (the last one on top), and Put() takes the rest
// (here, a stack that cannot grow and no TransferStack: the rest spill); a Put to the full
// stack then moves a batch off the top in one sequence and releases it. Every block ends up
// cached or released, exactly once.
TEST(RseqBatchTest, ABatchGoesOnInOrderAndAFullStackMovesOneOff) {
  if (!internal::RseqUsable()) GTEST_SKIP() << "restartable sequences are not in use here";
  constexpr uint32_t kCapacity = 8;
  Sweeper sweeper{Sweeper::Options::Manual()};
  testing::RecordingReleaser releaser;
  internal::CachePolicy policy;
  policy.mode = CacheMode::kPerCpu;
  policy.direct_release_classes = 1;  // No TransferStack: a full stack's batch is released.
  internal::BlockCache cache({64}, {kCapacity}, &releaser, &sweeper, /*allow_rseq=*/true,
                             policy);
  ASSERT_TRUE(cache.uses_rseq());
  std::vector<uint64_t> storage(8 * 20);
  std::vector<void*> blocks;
  for (size_t i = 0; i < 20; ++i) blocks.push_back(&storage[8 * i]);
  std::vector<void*> got;
  std::thread pinned([&] {
    if (!PinTo(AllowedCpus().front())) return;
    // The CPU's cache is made (and opened) by the first slow path: one Put and its Get.
    cache.Put(0, blocks[19]);
    ASSERT_EQ(cache.TryGet(0), blocks[19]);
    // Blocks 0 to 2 fit; of blocks 3 to 10, 3 to 7 fit and Put() takes 8, 9 and 10: the full
    // stack moves a batch (half its capacity) off its top, 7 to 4, before 8 goes on.
    cache.PutBatch(0, blocks.data(), 3);
    EXPECT_EQ(cache.Snapshot().primary_blocks, 3u);
    cache.PutBatch(0, blocks.data() + 3, 8);
    EXPECT_EQ(cache.Snapshot().primary_blocks, 7u);
    // Block 11 fills the stack; block 12 moves 11 to 8 off.
    cache.Put(0, blocks[11]);
    EXPECT_EQ(cache.Snapshot().primary_blocks, kCapacity);
    cache.Put(0, blocks[12]);
    for (void* b = cache.TryGet(0); b != nullptr; b = cache.TryGet(0)) got.push_back(b);
  });
  pinned.join();
  if (got.empty() && releaser.released().empty()) GTEST_SKIP() << "could not pin the thread";
  const std::vector<void*> expected = {blocks[12], blocks[3], blocks[2], blocks[1], blocks[0]};
  EXPECT_EQ(got, expected);
  for (size_t i = 4; i <= 11; ++i) {
    EXPECT_EQ(releaser.TimesReleased(0, blocks[i]), 1) << "block " << i;
  }
  EXPECT_EQ(releaser.released().size(), 8u);
  EXPECT_EQ(releaser.calls(), 2) << "each full stack moved its batch off in one piece";
}

INSTANTIATE_TEST_SUITE_P(BothPaths, RseqTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Rseq" : "Locked";
                         });

}  // namespace
}  // namespace syncpool
