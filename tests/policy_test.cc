// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of the sweeper as a garbage collector, all driven through SweepNow() or Tick() with an
// injected clock and pressure source (no test waits for a thread):
//   - retention: the working set stays primary across epochs, Go's policy demotes it, and idle
//     blocks leave within two epochs under both;
//   - a CPU whose cache nobody used during an epoch is drained;
//   - byte budgets, per cache (and the capacities fitted to them) and process-wide;
//   - memory pressure: sooner epochs that release everything.
// Discarded pages, environment variables and the exit report have tests of their own
// (pages_test, env_test, stats_report_test).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "recording_releaser.h"
#include "src/block_cache.h"
#include "syncpool/options.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"

namespace syncpool {
namespace {

using ::syncpool::internal::BlockCache;
using ::syncpool::testing::RecordingReleaser;
using ::syncpool::testing::ScopedFakeCpu;
using std::chrono::milliseconds;

constexpr size_t kBlockBytes = 16;

class PolicyTest : public ::testing::Test {
 public:
  void* block(int i) { return &storage_[i]; }

 protected:
  BlockCache MakeCache(Retention retention, uint32_t capacity = 8, size_t budget = 0,
                       CacheMode mode = CacheMode::kAuto) {
    internal::CachePolicy policy;
    policy.mode = mode;
    policy.retention = retention;
    policy.max_cached_bytes = budget;
    return BlockCache({kBlockBytes}, {capacity}, &releaser_, &sweeper_, /*allow_rseq=*/true,
                      policy);
  }

  Sweeper sweeper_{Sweeper::Options::Manual()};
  RecordingReleaser releaser_;
  alignas(64) char storage_[32][64] = {};
};

// On CPU 0: gives back `n` blocks, the way a burst ends.
void PutBurst(BlockCache& cache, PolicyTest& t, int first, int n) {
  for (int i = first; i < first + n; ++i) cache.Put(0, t.block(i));
}

// On the current (fake) CPU: takes `n` blocks and gives them back, one round of a steady
// workload.
void Cycle(BlockCache& cache, int n) {
  std::vector<void*> held;
  for (int i = 0; i < n; ++i) held.push_back(cache.Get(0));
  for (void* b : held) {
    ASSERT_NE(b, nullptr);
    cache.Put(0, b);
  }
}

TEST_F(PolicyTest, WorkingSetStaysPrimaryAcrossEpochsAndIdleBlocksLeaveWithinTwo) {
  BlockCache cache = MakeCache(Retention::kWorkingSet);
  ScopedFakeCpu cpu(0);
  PutBurst(cache, *this, 0, 6);
  sweeper_.SweepNow();  // Only given back, never taken: no working set. All six are victims.
  Stats s = cache.Snapshot();
  EXPECT_EQ(s.primary_blocks, 0u);
  EXPECT_EQ(s.victim_blocks, 6u);

  Cycle(cache, 2);      // The steady workload takes two of them (from the victims).
  sweeper_.SweepNow();  // Those two stay primary; the four untaken victims go.
  s = cache.Snapshot();
  EXPECT_EQ(s.primary_blocks, 2u);
  EXPECT_EQ(s.victim_blocks, 0u);
  EXPECT_EQ(s.swept_blocks, 4u);
  for (int epoch = 0; epoch < 3; ++epoch) {
    Cycle(cache, 2);
    sweeper_.SweepNow();
    s = cache.Snapshot();
    EXPECT_EQ(s.primary_blocks, 2u) << "epoch " << epoch;  // Found on the fast path.
    EXPECT_EQ(s.swept_blocks, 4u) << "epoch " << epoch;
  }

  // The workload stops: the two blocks are gone two epochs later at the latest.
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  s = cache.Snapshot();
  EXPECT_EQ(s.cached_blocks(), 0u);
  EXPECT_EQ(s.swept_blocks, 6u);
  EXPECT_EQ(releaser_.released().size(), 6u);
}

TEST_F(PolicyTest, VictimPolicyDemotesTheWholePrimaryEveryEpoch) {
  BlockCache cache = MakeCache(Retention::kVictim);
  ScopedFakeCpu cpu(0);
  PutBurst(cache, *this, 0, 6);
  sweeper_.SweepNow();
  Cycle(cache, 2);
  for (int epoch = 0; epoch < 3; ++epoch) {
    sweeper_.SweepNow();
    const Stats s = cache.Snapshot();
    EXPECT_EQ(s.primary_blocks, 0u) << "epoch " << epoch;  // Every Get now takes the slow path.
    EXPECT_EQ(s.victim_blocks, 2u) << "epoch " << epoch;
    Cycle(cache, 2);
  }
  EXPECT_EQ(cache.Snapshot().swept_blocks, 4u);
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  EXPECT_EQ(cache.Snapshot().cached_blocks(), 0u);
}

TEST_F(PolicyTest, CpuNobodyUsedDuringAnEpochIsDrained) {
  if (ScopedFakeCpu::NumCpus() < 2) GTEST_SKIP() << "needs 2 CPU ids";
  // Per CPU whatever SYNCPOOL_MODE says: the fake CPU ids name the caches.
  BlockCache cache = MakeCache(Retention::kWorkingSet, 8, 0, CacheMode::kPerCpu);
  for (int cpu : {0, 1}) {
    ScopedFakeCpu on(cpu);
    PutBurst(cache, *this, 8 * cpu, 3);
  }
  sweeper_.SweepNow();
  for (int cpu : {0, 1}) {
    ScopedFakeCpu on(cpu);
    Cycle(cache, 3);
  }
  sweeper_.SweepNow();  // Both CPUs keep their three blocks as working set.
  EXPECT_EQ(cache.Snapshot().primary_blocks, 6u);
  {
    ScopedFakeCpu on(0);
    Cycle(cache, 3);  // CPU 1 sees nothing this epoch.
  }
  sweeper_.SweepNow();
  const Stats s = cache.Snapshot();
  EXPECT_EQ(s.primary_blocks, 3u);  // CPU 0's.
  EXPECT_EQ(s.victim_blocks, 0u);
  EXPECT_EQ(s.swept_blocks, 3u);  // CPU 1's, at once rather than over two epochs.
  for (int i = 8; i < 11; ++i) EXPECT_EQ(releaser_.TimesReleased(0, block(i)), 1) << i;
}

// The same rule per thread: two threads each keep a working set; when one of them sees nothing
// during an epoch (it waits, alive, holding its slot), its cache is drained at once.
TEST_F(PolicyTest, ThreadNobodyUsedDuringAnEpochIsDrained) {
  BlockCache cache = MakeCache(Retention::kWorkingSet, 8, 0, CacheMode::kPerThread);
  if (!cache.per_thread()) GTEST_SKIP() << "no per-thread mode here: " << cache.mode().why;
  // Runs `work` on a second thread that stays alive (its column stays its own) until the end.
  std::mutex mu;
  std::condition_variable cv;
  std::function<void()> job;
  bool done = false;
  bool quit = false;
  std::thread other([&] {
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      cv.wait(l, [&] { return job != nullptr || quit; });
      if (quit) return;
      job();
      job = nullptr;
      done = true;
      cv.notify_all();
    }
  });
  auto on_other = [&](std::function<void()> work) {
    std::unique_lock<std::mutex> l(mu);
    done = false;
    job = std::move(work);
    cv.notify_all();
    cv.wait(l, [&] { return done; });
  };
  PutBurst(cache, *this, 0, 3);
  on_other([&] { PutBurst(cache, *this, 8, 3); });
  sweeper_.SweepNow();
  Cycle(cache, 3);
  on_other([&] { Cycle(cache, 3); });
  sweeper_.SweepNow();  // Both threads keep their three blocks as working set.
  EXPECT_EQ(cache.Snapshot().primary_blocks, 6u);
  EXPECT_EQ(cache.Snapshot().caches, 2u);
  Cycle(cache, 3);  // The other thread sees nothing this epoch.
  sweeper_.SweepNow();
  const Stats s = cache.Snapshot();
  EXPECT_EQ(s.primary_blocks, 3u);  // This thread's.
  EXPECT_EQ(s.victim_blocks, 0u);
  EXPECT_EQ(s.swept_blocks, 3u);  // The other thread's, at once.
  for (int i = 8; i < 11; ++i) EXPECT_EQ(releaser_.TimesReleased(0, block(i)), 1) << i;
  {
    std::lock_guard<std::mutex> l(mu);
    quit = true;
  }
  cv.notify_all();
  other.join();
}

TEST_F(PolicyTest, CacheBudgetReleasesTheExcessAtTheEpoch) {
  BlockCache cache = MakeCache(Retention::kWorkingSet, /*capacity=*/8, /*budget=*/4 * kBlockBytes);
  ScopedFakeCpu cpu(0);
  PutBurst(cache, *this, 0, 8);
  sweeper_.SweepNow();
  const Stats s = cache.Snapshot();
  EXPECT_LE(s.cached_bytes(), 4 * kBlockBytes);
  EXPECT_EQ(s.over_budget_blocks, 8u - s.cached_blocks());
  EXPECT_EQ(s.over_budget_bytes, s.over_budget_blocks * kBlockBytes);
  EXPECT_EQ(releaser_.released().size(), s.over_budget_blocks);
  EXPECT_EQ(s.swept_blocks, 0u);
}

TEST_F(PolicyTest, CacheBudgetSendsBlocksUpstreamInsteadOfToTheSharedLayer) {
  // Capacity 2: batches of one block move to the TransferStack; the budget is one block.
  BlockCache cache = MakeCache(Retention::kWorkingSet, /*capacity=*/2, /*budget=*/kBlockBytes);
  ScopedFakeCpu cpu(0);
  PutBurst(cache, *this, 0, 3);  // The third makes room: block 1 moves, within the budget.
  EXPECT_TRUE(releaser_.released().empty());
  cache.Put(0, block(3));  // Block 2 would go over it: released instead.
  ASSERT_EQ(releaser_.released().size(), 1u);
  EXPECT_EQ(releaser_.released()[0].second, block(2));
  const Stats s = cache.Snapshot();
  EXPECT_EQ(s.over_budget_blocks, 1u);
  EXPECT_EQ(s.spills, 0u);
}

TEST_F(PolicyTest, ProcessBudgetCoversEveryCache) {
  BlockCache a = MakeCache(Retention::kWorkingSet);
  BlockCache b = MakeCache(Retention::kWorkingSet);
  ScopedFakeCpu cpu(0);
  PutBurst(a, *this, 0, 4);
  PutBurst(b, *this, 8, 4);
  SetProcessCacheLimit(5 * kBlockBytes);
  sweeper_.SweepNow();
  SetProcessCacheLimit(0);
  const Stats sa = a.Snapshot();
  const Stats sb = b.Snapshot();
  EXPECT_LE(sa.cached_bytes() + sb.cached_bytes(), 5 * kBlockBytes);
  EXPECT_GE(sa.over_budget_blocks + sb.over_budget_blocks, 3u);
  EXPECT_EQ(ProcessCacheLimit(), 0u);
}

TEST(FitToBudgetTest, LowersCapacitiesSoThatFullCachesFit) {
  const std::vector<size_t> bytes = {16, 1024};
  std::vector<uint32_t> caps = {128, 64};
  const size_t budget = 256 * 1024;
  internal::FitToBudget(bytes, budget, caps);
  const double sets = 2.0 * ScopedFakeCpu::NumCpus() + 4;
  EXPECT_LE(sets * (caps[0] * 16.0 + caps[1] * 1024.0), static_cast<double>(budget));
  EXPECT_GE(caps[0], 1u);
  EXPECT_GE(caps[1], 1u);
  EXPECT_LT(caps[1], 64u);

  std::vector<uint32_t> untouched = {128, 64};
  internal::FitToBudget(bytes, 0, untouched);  // No budget.
  EXPECT_EQ(untouched, (std::vector<uint32_t>{128, 64}));
  std::vector<uint32_t> tiny = {128, 64};
  internal::FitToBudget(bytes, 1, tiny);  // Cannot fit: one block per class stays.
  EXPECT_EQ(tiny, (std::vector<uint32_t>{1, 1}));
}

// A pressure source and a clock that the test sets.
class FakePressure final : public PressureSource {
 public:
  bool UnderPressure() override {
    ++asked;
    return pressure;
  }
  bool pressure = false;
  int asked = 0;
};

// A sweeper without a thread, every 100 ms, whose Tick() reads the time from `*now` and asks
// `pressure`.
Sweeper::Options TickOptions(FakePressure* pressure, std::chrono::steady_clock::time_point* now) {
  Sweeper::Options options = Sweeper::Options::Manual(milliseconds(100));
  options.pressure = pressure;
  options.clock = [now] { return *now; };
  return options;
}

TEST_F(PolicyTest, TickRunsEpochsOnTheClockAndSoonerUnderPressure) {
  FakePressure pressure;
  std::chrono::steady_clock::time_point now{};
  Sweeper sweeper(TickOptions(&pressure, &now));
  internal::CachePolicy policy;
  BlockCache cache({kBlockBytes}, {8}, &releaser_, &sweeper, /*allow_rseq=*/true, policy);
  ScopedFakeCpu cpu(0);
  PutBurst(cache, *this, 0, 5);

  now += milliseconds(20);
  EXPECT_FALSE(sweeper.Tick());  // Before a quarter interval: not even pressure is asked.
  EXPECT_EQ(pressure.asked, 0);
  now += milliseconds(10);
  EXPECT_FALSE(sweeper.Tick());  // 30 ms, no pressure: the interval has not passed.
  EXPECT_EQ(pressure.asked, 1);
  EXPECT_EQ(sweeper.epochs(), 0u);

  pressure.pressure = true;
  EXPECT_TRUE(sweeper.Tick());  // A pressure epoch releases everything, both generations.
  Stats s = cache.Snapshot();
  EXPECT_EQ(s.cached_blocks(), 0u);
  EXPECT_EQ(s.pressure_blocks, 5u);
  EXPECT_EQ(s.pressure_bytes, 5 * kBlockBytes);
  EXPECT_EQ(s.swept_blocks, 0u);
  EXPECT_FALSE(sweeper.Tick());  // The next pressure epoch waits a quarter interval.
  now += milliseconds(25);
  PutBurst(cache, *this, 8, 2);
  EXPECT_TRUE(sweeper.Tick());
  EXPECT_EQ(cache.Snapshot().pressure_blocks, 7u);

  pressure.pressure = false;
  PutBurst(cache, *this, 16, 3);
  now += milliseconds(99);
  EXPECT_FALSE(sweeper.Tick());
  now += milliseconds(1);
  EXPECT_TRUE(sweeper.Tick());  // A whole interval since the last epoch: an ordinary one.
  s = cache.Snapshot();
  EXPECT_EQ(s.victim_blocks, 3u);
  EXPECT_EQ(s.pressure_blocks, 7u);
  EXPECT_EQ(sweeper.epochs(), 3u);
}

TEST_F(PolicyTest, SweepNowResetsTheClockOfTick) {
  FakePressure pressure;
  std::chrono::steady_clock::time_point now{};
  Sweeper sweeper(TickOptions(&pressure, &now));
  now += milliseconds(90);
  sweeper.SweepNow();
  now += milliseconds(50);
  EXPECT_FALSE(sweeper.Tick());  // 50 ms since the last epoch.
  now += milliseconds(50);
  EXPECT_TRUE(sweeper.Tick());
}

}  // namespace
}  // namespace syncpool
