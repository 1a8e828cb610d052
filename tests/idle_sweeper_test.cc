// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of the idle sweeper: ParkIfIdle() parks only when no cache holds anything, the next
// slow path of any cache (a miss, or the first Put into a parked cache) wakes it, a parked
// background thread does not wake up at all (counted from its clock reads and context
// switches), and no wake-up is lost under concurrent use (every object is eventually
// released). Each with debug checks off and on; the _perthread twin runs them on per-thread
// caches. Nothing sleeps: the steps run directly (ParkIfIdle(), SweepNow(), Tick() on an
// injected clock), and the tests of a real background thread follow it through its clock and a
// cache that counts its visits.

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "gtest/gtest.h"
#include "src/sweeper_access.h"
#include "src/mutex.h"
#include "src/sweepable.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace {

using internal::Epoch;
using internal::Sweepable;
using internal::SweeperAccess;

struct Buf {
  char bytes[256];
};

// With debug checks off (the inline paths of the caches' mode: restartable sequences, or per
// thread in the _perthread twin) and on (the same mode, every call through the slow paths).
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
  EXPECT_FALSE(SweeperAccess::ParkIfIdle(sweeper_));
  EXPECT_FALSE(SweeperAccess::parked(sweeper_));
  pool.Clear();
  EXPECT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));
  EXPECT_TRUE(SweeperAccess::parked(sweeper_));
  // Use after idleness begins with a miss: its slow path wakes the sweeper.
  auto h = pool.Get();
  ASSERT_TRUE(h);
  EXPECT_FALSE(SweeperAccess::parked(sweeper_));
}

TEST_P(IdleSweeperTest, TheFirstPutIntoAParkedCacheWakesIt) {
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  { auto h = pool.Get(); }
  pool.Clear();  // The caches exist and are open, and hold nothing.
  ASSERT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));
  // An object made elsewhere: where the inline push would have room, the park made it take
  // the slow path anyway.
  pool.Put(std::make_unique<Buf>());
  EXPECT_FALSE(SweeperAccess::parked(sweeper_));
  EXPECT_EQ(pool.GetStats().cached_blocks(), 1u);
  // Then the epochs release it as usual.
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  EXPECT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));
}

TEST_P(IdleSweeperTest, AnyCacheHoldingSomethingKeepsItAwake) {
  Pool<Buf> empty(&NewBuf, nullptr, PoolOptions(&sweeper_));
  PoolResource resource(PoolOptions(&sweeper_));
  { auto h = empty.Get(); }
  empty.Clear();
  void* p = resource.allocate(100);
  resource.deallocate(p, 100);
  EXPECT_FALSE(SweeperAccess::ParkIfIdle(sweeper_));
  // Two epochs release the resource's block (it was not used since).
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  ASSERT_EQ(resource.GetStats().cached_blocks(), 0u);
  EXPECT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));
  p = resource.allocate(100);  // A miss.
  EXPECT_FALSE(SweeperAccess::parked(sweeper_));
  resource.deallocate(p, 100);
  EXPECT_FALSE(SweeperAccess::ParkIfIdle(sweeper_));
}

// An epoch reopens the columns it visits: it ends a park, so that a Put into a reopened
// column is not left unseen.
TEST_P(IdleSweeperTest, AnEpochEndsAPark) {
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  { auto h = pool.Get(); }
  pool.Clear();
  ASSERT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));
  sweeper_.SweepNow();
  EXPECT_FALSE(SweeperAccess::parked(sweeper_));
  EXPECT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));
}

TEST_P(IdleSweeperTest, ANewCacheWakesIt) {
  ASSERT_TRUE(SweeperAccess::ParkIfIdle(sweeper_));  // No cache at all.
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper_));
  EXPECT_TRUE(SweeperAccess::parked(sweeper_));  // Not registered before its first use.
  { auto h = pool.Get(); }
  EXPECT_FALSE(SweeperAccess::parked(sweeper_));
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
  ASSERT_TRUE(SweeperAccess::ParkIfIdle(sweeper));
  now += std::chrono::seconds(60);  // Parked for a minute.
  { auto h = pool.Get(); }
  EXPECT_FALSE(SweeperAccess::parked(sweeper));
  now += std::chrono::milliseconds(25);
  EXPECT_TRUE(sweeper.Tick());
}

INSTANTIATE_TEST_SUITE_P(DebugChecks, IdleSweeperTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

// The voluntary context switches of the thread `tid` of this process, from
// /proc/self/task/<tid>/status; -1 if it cannot be read.
int64_t VoluntarySwitches(pid_t tid) {
  std::ifstream status("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
      return std::stoll(line.substr(line.find(':') + 1));
    }
  }
  return -1;
}

// A count that threads raise and others wait on (on std::mutex, which ThreadSanitizer sees).
class EventCount {
 public:
  void Add() {
    internal::MutexLock l(&mu_);
    ++count_;
    cv_.notify_all();
  }

  uint64_t Get() {
    internal::MutexLock l(&mu_);
    return count_;
  }

  // Waits until the count exceeds `n`. False after a minute: then what should have raised it
  // never will (a lost wake-up), and the test fails instead of hanging.
  bool AwaitAbove(uint64_t n) {
    internal::MutexLock l(&mu_);
    return mu_.AwaitWithTimeout(cv_, std::chrono::minutes(1),
                                [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return count_ > n; });
  }

 private:
  internal::Mutex mu_;
  std::condition_variable cv_;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// The clock of a sweeper whose background thread a test watches (Sweeper::Options::clock).
// Every wake-up of the thread reads it (Tick()), so it counts the thread's reads and
// remembers the thread's id. With `advance`, each read by the thread moves it one interval on,
// so that every wake-up runs an epoch (whose start reads it again); without, it stands still
// and no epoch is ever due. Reads by the thread that made it (the sweeper's constructor, and a
// test's own Tick()) give the start, before every epoch: no epoch is due for them either.
class ThreadClock {
 public:
  ThreadClock(std::chrono::milliseconds interval, bool advance)
      : interval_(interval), advance_(advance) {}

  std::function<std::chrono::steady_clock::time_point()> Function() {
    return [this] { return Read(); };
  }

  // Reads by the sweeper's thread so far.
  uint64_t reads() { return reads_.Get(); }
  // Waits until the sweeper's thread has read it more than `n` times in all.
  bool AwaitReadsAbove(uint64_t n) { return reads_.AwaitAbove(n); }
  // The thread that reads it (0 before its first read).
  pid_t reader() const { return reader_.load(); }

 private:
  std::chrono::steady_clock::time_point Read() {
    if (std::this_thread::get_id() == owner_) return kStart;
    reader_.store(gettid());
    reads_.Add();
    if (!advance_) return kStart;
    return kStart + interval_ * ++thread_reads_;
  }

  static constexpr std::chrono::steady_clock::time_point kStart{std::chrono::hours(1)};
  const std::chrono::milliseconds interval_;
  const bool advance_;
  const std::thread::id owner_ = std::this_thread::get_id();
  std::atomic<int64_t> thread_reads_{0};
  std::atomic<pid_t> reader_{0};
  EventCount reads_;
};

class NoPressure final : public PressureSource {
 public:
  bool UnderPressure() override { return false; }
};

// A cache of a sweeper that holds nothing and counts the sweeper's visits: its epochs, and its
// parks (it always agrees to park). Every park that succeeds visits it, so a test learns from
// it where the sweeper's thread is. Registered from construction to destruction.
class ProbeCache final : public Sweepable {
 public:
  explicit ProbeCache(Sweeper* sweeper) : sweeper_(sweeper) { SweeperAccess::Register(*sweeper_, this); }
  ProbeCache(const ProbeCache&) = delete;
  ProbeCache& operator=(const ProbeCache&) = delete;
  ~ProbeCache() { SweeperAccess::Unregister(*sweeper_, this); }

  void SweepEpoch(const Epoch& /*epoch*/) override { epochs.Add(); }
  bool Park() override {
    parks.Add();
    return true;
  }

  EventCount epochs;
  EventCount parks;

 private:
  Sweeper* const sweeper_;
};

// Waits until the background thread of `sweeper` has parked, woken by the parks `probe` sees
// (no polling). After each, a Tick() on this thread, for which no epoch is due (ThreadClock),
// waits for the sweep or park in progress to end (both hold the lock Tick() takes), so that
// parked() then says whether that park succeeded. False after a minute without a park.
bool WaitUntilParked(Sweeper& sweeper, ProbeCache& probe) {
  for (;;) {
    const uint64_t parks = probe.parks.Get();
    EXPECT_FALSE(sweeper.Tick());
    if (SweeperAccess::parked(sweeper)) return true;
    if (!probe.parks.AwaitAbove(parks)) return false;
  }
}

// A background sweeper every kInterval: its thread wakes every kInterval / 4 while anything is
// cached. With a ThreadClock that advances, every wake-up runs an epoch.
constexpr std::chrono::milliseconds kInterval(4);

Sweeper::Options ThreadOptions(ThreadClock& clock, NoPressure& pressure) {
  Sweeper::Options options = Sweeper::Options::Every(kInterval);
  options.clock = clock.Function();
  options.pressure = &pressure;
  return options;
}

// A pool swept by a background thread of its own (the real thread the rules below are about),
// with debug checks off (the inline paths) and on (every call through the slow paths).
using IdleSweeperThreadTest = IdleSweeperTest;

// A parked background thread does not wake up. Over two windows of 100 intervals each,
// measured by a reference thread that is not parked (a sweeper with the same interval, whose
// clock never makes an epoch due, so it never parks: it wakes 400 times), the parked thread
// does not read its clock once (every wake-up would: Tick()) nor run an epoch; over the
// second it makes at most one voluntary context switch (a thread that woke each interval
// would make 100). The first window lets it reach its wait: it may still be on its way when
// parked() first says so, and on the way it may block more than once under emulation (two
// switches were seen in CI's aarch64 step under qemu-user, likely on the emulator's own locks).
// Counted in wake-ups, not time, so a loaded machine changes nothing; the windows are the only
// real time that passes, and nothing waits for the parked thread.
TEST_P(IdleSweeperThreadTest, AParkedThreadDoesNotWakeUp) {
  NoPressure pressure;
  ThreadClock clock(kInterval, /*advance=*/true);
  Sweeper sweeper(ThreadOptions(clock, pressure));
  ProbeCache probe(&sweeper);  // Starts the thread.
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper));
  { auto h = pool.Get(); }
  // The epochs release the object, then the thread parks.
  ASSERT_TRUE(WaitUntilParked(sweeper, probe));
  ASSERT_EQ(pool.GetStats().cached_blocks(), 0u);
  const pid_t thread = clock.reader();
  ASSERT_NE(thread, 0);
  const uint64_t reads = clock.reads();
  const uint64_t epochs = sweeper.epochs();
  const uint64_t probe_epochs = probe.epochs.Get();
  auto window = [&pressure] {
    ThreadClock reference_clock(kInterval, /*advance=*/false);
    Sweeper reference(ThreadOptions(reference_clock, pressure));
    ProbeCache reference_cache(&reference);  // Starts its thread.
    return reference_clock.AwaitReadsAbove(400);  // 100 intervals of wake-ups.
  };
  ASSERT_TRUE(window());
  const int64_t switches = VoluntarySwitches(thread);
  ASSERT_GE(switches, 0) << "no /proc/self/task/" << thread << "/status";
  ASSERT_TRUE(window());
  EXPECT_EQ(clock.reads(), reads);
  EXPECT_LE(VoluntarySwitches(thread) - switches, 1);
  EXPECT_EQ(sweeper.epochs(), epochs);
  EXPECT_TRUE(SweeperAccess::parked(sweeper));
  // Use resumes: a miss wakes it (it reads its clock again), the epochs go on, and once they
  // have released the object it parks again.
  { auto h = pool.Get(); }
  EXPECT_FALSE(SweeperAccess::parked(sweeper));
  ASSERT_TRUE(clock.AwaitReadsAbove(reads));
  ASSERT_TRUE(probe.epochs.AwaitAbove(probe_epochs));
  ASSERT_TRUE(WaitUntilParked(sweeper, probe));
  EXPECT_GT(sweeper.epochs(), epochs);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
}

// Threads use a pool in bursts while the background thread runs an epoch at every wake-up
// (every millisecond) and parks whenever it finds nothing: once they stop and give everything
// back, the epochs must release every object. A wake-up lost between a park and a Put would
// leave objects cached with the thread parked for good. Between most bursts a thread waits
// for the sweeper's next attempt to park, so that its next burst starts while that park is
// under way (the probe announces the attempt from inside it).
TEST_P(IdleSweeperThreadTest, NoWakeUpIsLostUnderConcurrentUse) {
  NoPressure pressure;
  ThreadClock clock(kInterval, /*advance=*/true);
  Sweeper sweeper(ThreadOptions(clock, pressure));
  ProbeCache probe(&sweeper);
  Pool<Buf> pool(&NewBuf, nullptr, PoolOptions(&sweeper));
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&pool, &probe, t] {
      for (int burst = 0; burst < 200; ++burst) {
        // Read before the burst: whatever the burst leaves cached, an attempt to park follows
        // it (the burst woke the thread if it was parked, and the epochs go on until one
        // succeeds).
        const uint64_t parks = probe.parks.Get();
        std::vector<Pool<Buf>::Handle> held;
        for (int i = 0; i < (burst + t) % 7 + 1; ++i) held.push_back(pool.Get());
        held.clear();
        if (burst % 3 == t) pool.Put(std::make_unique<Buf>());
        if (burst % 5 != 0) {
          ASSERT_TRUE(probe.parks.AwaitAbove(parks)) << "the sweeper stopped trying to park";
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(WaitUntilParked(sweeper, probe));
  // Parked: nothing can be cached, unless a wake-up was lost.
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u) << pool.GetStats().DebugString();
}

INSTANTIATE_TEST_SUITE_P(DebugChecks, IdleSweeperThreadTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

}  // namespace
}  // namespace syncpool
