// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of the idle sweeper: ParkIfIdle() parks only when no cache holds anything, the next
// slow path of any cache (a miss, or the first Put into a parked cache) wakes it, a parked
// background thread does not wake up at all (counted from its context switches), and no
// wake-up is lost under concurrent use (every object is eventually released).

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace {

struct Buf {
  char bytes[256];
};

// With debug checks off (the inline paths of the caches' mode: restartable sequences, or per
// thread in the _perthread twin) and on (the locked mode).
class IdleSweeperTest : public ::testing::TestWithParam<bool> {
 protected:
  Options PoolOptions(Sweeper* sweeper) {
    Options options;
    options.sweeper = sweeper;
    options.debug_checks = GetParam();
    return options;
  }

  Sweeper sweeper_{Sweeper::Options::Manual()};
};

std::unique_ptr<Buf> NewBuf() { return std::make_unique<Buf>(); }

TEST_P(IdleSweeperTest, ParksOnlyWhenNothingIsCached) {
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  { auto h = pool.Get(); }  // Cached now.
  EXPECT_FALSE(sweeper_.ParkIfIdle());
  EXPECT_FALSE(sweeper_.parked());
  pool.Clear();
  EXPECT_TRUE(sweeper_.ParkIfIdle());
  EXPECT_TRUE(sweeper_.parked());
  // Use after idleness begins with a miss: its slow path wakes the sweeper.
  auto h = pool.Get();
  ASSERT_TRUE(h);
  EXPECT_FALSE(sweeper_.parked());
}

TEST_P(IdleSweeperTest, TheFirstPutIntoAParkedCacheWakesIt) {
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  { auto h = pool.Get(); }
  pool.Clear();  // The caches exist and are open, and hold nothing.
  ASSERT_TRUE(sweeper_.ParkIfIdle());
  // An object made elsewhere: where the inline push would have room, the park made it take
  // the slow path anyway.
  pool.Put(std::make_unique<Buf>());
  EXPECT_FALSE(sweeper_.parked());
  EXPECT_EQ(pool.GetStats().cached_blocks(), 1u);
  // Then the epochs release it as usual.
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  EXPECT_TRUE(sweeper_.ParkIfIdle());
}

TEST_P(IdleSweeperTest, AnyCacheHoldingSomethingKeepsItAwake) {
  Pool<Buf> empty(&NewBuf, nullptr, PoolOptions(&sweeper_));
  PoolResource resource(PoolOptions(&sweeper_));
  { auto h = empty.Get(); }
  empty.Clear();
  void* p = resource.allocate(100);
  resource.deallocate(p, 100);
  EXPECT_FALSE(sweeper_.ParkIfIdle());
  // Two epochs release the resource's block (it was not used since).
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  ASSERT_EQ(resource.GetStats().cached_blocks(), 0u);
  EXPECT_TRUE(sweeper_.ParkIfIdle());
  p = resource.allocate(100);  // A miss.
  EXPECT_FALSE(sweeper_.parked());
  resource.deallocate(p, 100);
  EXPECT_FALSE(sweeper_.ParkIfIdle());
}

// An epoch reopens the columns it visits: it ends a park, so that a Put into a reopened
// column is not left unseen.
TEST_P(IdleSweeperTest, AnEpochEndsAPark) {
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  { auto h = pool.Get(); }
  pool.Clear();
  ASSERT_TRUE(sweeper_.ParkIfIdle());
  sweeper_.SweepNow();
  EXPECT_FALSE(sweeper_.parked());
  EXPECT_TRUE(sweeper_.ParkIfIdle());
}

TEST_P(IdleSweeperTest, ANewCacheWakesIt) {
  ASSERT_TRUE(sweeper_.ParkIfIdle());  // No cache at all.
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  EXPECT_TRUE(sweeper_.parked());  // Not registered before its first use.
  { auto h = pool.Get(); }
  EXPECT_FALSE(sweeper_.parked());
}

// After use resumes, the background thread's next wake-up (within a quarter interval) runs an
// epoch: Tick() with the injected clock, as the thread calls it.
TEST_P(IdleSweeperTest, TheFirstEpochAfterUseResumesIsDueAtOnce) {
  std::chrono::steady_clock::time_point now{};
  Sweeper::Options options = Sweeper::Options::Manual(std::chrono::milliseconds(100));
  options.clock = [&now] { return now; };
  Sweeper sweeper(options);
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper));
  sweeper.Tick();
  { auto h = pool.Get(); }
  now += std::chrono::milliseconds(100);
  ASSERT_TRUE(sweeper.Tick());
  pool.Clear();
  ASSERT_TRUE(sweeper.ParkIfIdle());
  now += std::chrono::seconds(60);  // Parked for a minute.
  { auto h = pool.Get(); }
  EXPECT_FALSE(sweeper.parked());
  now += std::chrono::milliseconds(25);
  EXPECT_TRUE(sweeper.Tick());
}

INSTANTIATE_TEST_SUITE_P(DebugChecks, IdleSweeperTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

// The voluntary context switches of the process's sweeper threads (named "syncpool-sweep"),
// from /proc/self/task/*/status; -1 if there is none.
int64_t SweeperThreadSwitches() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int64_t total = -1;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string task = std::string("/proc/self/task/") + entry->d_name;
    std::ifstream comm(task + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name != "syncpool-sweep") continue;
    std::ifstream status(task + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        total = std::max<int64_t>(total, 0) + std::stoll(line.substr(line.find(':') + 1));
      }
    }
  }
  closedir(dir);
  return total;
}

// Waits (polling, bounded) for `done`; the rule under test is about a real thread.
template <typename Done>
bool WaitFor(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// A pool swept by a background thread of its own: the real thread the rules below are about.
class IdleSweeperThreadTest : public ::testing::Test {
 protected:
  // Starts the sweeper's thread, an epoch every `interval`, and the pool it sweeps.
  void Start(std::chrono::milliseconds interval) {
    sweeper_.emplace(Sweeper::Options::Every(interval));
    pool_.emplace(&NewBuf, nullptr, Options{.sweeper = &*sweeper_, .debug_checks = false});
  }

  std::optional<Sweeper> sweeper_;
  std::optional<Pool<Buf>> pool_;  // Destroyed before its sweeper.
};

// A parked background thread does not wake up: counted in wake-ups (context switches), not
// time, so a loaded machine changes nothing. Unparked, it would wake 4 times per interval.
TEST_F(IdleSweeperThreadTest, AParkedThreadDoesNotWakeUp) {
  Start(std::chrono::milliseconds(4));
  Sweeper& sweeper = *sweeper_;
  Pool<Buf>& pool = *pool_;
  { auto h = pool.Get(); }
  // The epochs release the object, then the thread parks.
  ASSERT_TRUE(WaitFor([&] { return sweeper.parked(); }));
  ASSERT_EQ(pool.GetStats().cached_blocks(), 0u);
  const int64_t before = SweeperThreadSwitches();
  ASSERT_GE(before, 0) << "no thread named syncpool-sweep";
  const uint64_t epochs = sweeper.epochs();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // 100 intervals.
  EXPECT_LE(SweeperThreadSwitches() - before, 1);
  EXPECT_EQ(sweeper.epochs(), epochs);
  // Use resumes: a miss wakes it, and the epochs go on.
  { auto h = pool.Get(); }
  ASSERT_TRUE(WaitFor([&] { return sweeper.epochs() > epochs; }));
  ASSERT_TRUE(WaitFor([&] { return sweeper.parked(); }));
}

// Threads use a pool in bursts with pauses while the background thread sweeps every
// millisecond and parks whenever it finds nothing: once they stop and give everything back,
// the epochs must release every object. A wake-up lost between a park and a Put would leave
// objects cached with the thread parked for good.
TEST_F(IdleSweeperThreadTest, NoWakeUpIsLostUnderConcurrentUse) {
  Start(std::chrono::milliseconds(1));
  Sweeper& sweeper = *sweeper_;
  Pool<Buf>& pool = *pool_;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&pool, t] {
      for (int burst = 0; burst < 200; ++burst) {
        std::vector<Pool<Buf>::Handle> held;
        for (int i = 0; i < (burst + t) % 7 + 1; ++i) held.push_back(pool.Get());
        held.clear();
        if (burst % 3 == t) pool.Put(std::make_unique<Buf>());
        std::this_thread::sleep_for(std::chrono::microseconds(200 * (burst % 5)));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(WaitFor([&] { return pool.GetStats().cached_blocks() == 0; }))
      << pool.GetStats().DebugString();
  EXPECT_TRUE(WaitFor([&] { return sweeper.parked(); }));
}

}  // namespace
}  // namespace syncpool
