// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of the Sweeper: registration, SweepNow(), the background thread's start and stop, and
// the ordering between sweeps and Register/Unregister on other threads. Nothing here sleeps:
// events are ordered with notifications and joins, and a thread blocked inside the sweeper is
// recognized by its state in /proc.

#include "syncpool/sweeper.h"

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "src/sweeper_access.h"
#include "src/option_table.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "tests/notification.h"

namespace syncpool {
namespace {

using internal::Epoch;
using internal::Sweepable;
using internal::SweeperAccess;

using std::chrono::milliseconds;

// Counts its epochs.
class CountingSweepable final : public Sweepable {
 public:
  void SweepEpoch(const Epoch& /*epoch*/) override { count_.fetch_add(1, std::memory_order_relaxed); }
  int count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> count_{0};
};

// Sets a flag when the thread that last ran SweepEpoch() exits.
class ExitWatchingSweepable final : public Sweepable {
 public:
  void SweepEpoch(const Epoch& /*epoch*/) override {
    thread_local ExitHook hook;
    hook.flag = &thread_exited_;
    if (!visited_.HasBeenNotified()) visited_.Notify();
  }
  void WaitForVisit() { visited_.WaitForNotification(); }
  bool thread_exited() const { return thread_exited_.load(); }

 private:
  struct ExitHook {
    std::atomic<bool>* flag = nullptr;
    ~ExitHook() {
      if (flag != nullptr) flag->store(true);
    }
  };

  syncpool::testing::Notification visited_;
  std::atomic<bool> thread_exited_{false};
};

// Blocks its first visit: announces it has entered, then waits to be let go.
class BlockingSweepable final : public Sweepable {
 public:
  void SweepEpoch(const Epoch& /*epoch*/) override {
    visits_.fetch_add(1);
    if (entered_.HasBeenNotified()) return;
    entered_.Notify();
    release_.WaitForNotification();
    finished_.store(true);
  }
  void WaitUntilEntered() { entered_.WaitForNotification(); }
  void Release() { release_.Notify(); }
  bool finished() const { return finished_.load(); }
  int visits() const { return visits_.load(); }

 private:
  std::atomic<int> visits_{0};
  syncpool::testing::Notification entered_;
  syncpool::testing::Notification release_;
  std::atomic<bool> finished_{false};
};

Sweeper::Options Foreground() { return Sweeper::Options::Manual(); }

// Whether the thread `tid` of this process is asleep in the kernel (state S in
// /proc/self/task/<tid>/stat: blocked, as in a wait on a mutex or condition variable).
bool Asleep(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // "tid (name) S ...": the name may hold spaces and parentheses, the state follows the last ')'.
  const size_t name_end = line.rfind(')');
  return name_end != std::string::npos && name_end + 2 < line.size() &&
         line[name_end + 2] == 'S';
}

TEST(SweeperTest, ForegroundSweeperNeverStartsAThread) {
  Sweeper sweeper(Foreground());
  EXPECT_FALSE(sweeper.thread_running());
  CountingSweepable cache;
  SweeperAccess::Register(sweeper, &cache);
  EXPECT_FALSE(sweeper.thread_running());
  {
    Options options;
    options.sweeper = &sweeper;
    Pool<int> pool([] { return std::make_unique<int>(); }, nullptr, options);
    pool.Put(std::make_unique<int>(1));  // The pool registers on first use.
    EXPECT_FALSE(sweeper.thread_running());
    sweeper.SweepNow();
    EXPECT_EQ(pool.GetStats().epochs, 1u);
  }
  EXPECT_FALSE(sweeper.thread_running());
  EXPECT_EQ(cache.count(), 1);
  SweeperAccess::Unregister(sweeper, &cache);
}

TEST(SweeperTest, SweepNowVisitsEveryRegisteredCache) {
  Sweeper sweeper(Foreground());
  EXPECT_EQ(sweeper.epochs(), 0u);
  sweeper.SweepNow();  // Nothing registered: still an epoch.
  EXPECT_EQ(sweeper.epochs(), 1u);

  CountingSweepable a;
  CountingSweepable b;
  SweeperAccess::Register(sweeper, &a);
  SweeperAccess::Register(sweeper, &b);
  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(sweeper.epochs(), 3u);
  EXPECT_EQ(a.count(), 2);
  EXPECT_EQ(b.count(), 2);
  SweeperAccess::Unregister(sweeper, &a);
  SweeperAccess::Unregister(sweeper, &b);
}

TEST(SweeperTest, UnregisterStopsVisits) {
  Sweeper sweeper(Foreground());
  CountingSweepable kept;
  CountingSweepable removed;
  SweeperAccess::Register(sweeper, &kept);
  SweeperAccess::Register(sweeper, &removed);
  sweeper.SweepNow();
  SweeperAccess::Unregister(sweeper, &removed);
  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(removed.count(), 1);
  EXPECT_EQ(kept.count(), 3);
  SweeperAccess::Unregister(sweeper, &kept);
}

TEST(SweeperTest, IntervalReflectsOptions) {
  Sweeper foreground(Sweeper::Options::Manual(milliseconds(250)));
  EXPECT_EQ(foreground.interval(), milliseconds(250));
  Sweeper background(Sweeper::Options::Every(milliseconds(7)));
  EXPECT_EQ(background.interval(), milliseconds(7));
  EXPECT_EQ(Sweeper().interval(), milliseconds(1000));
}

// sweeper.h states the default interval as a number; the option table's default for
// SYNCPOOL_SWEEP_INTERVAL_MS (what the default sweeper and the docs use) must be the same.
TEST(SweeperTest, DefaultIntervalIsTheOptionTablesDefault) {
  EXPECT_EQ(static_cast<uint64_t>(Sweeper::Options{}.interval.count()),
            internal::kOptionTable[internal::kOptSweepIntervalMs].fallback);
}

TEST(SweeperTest, DefaultIsOneInstance) {
  Sweeper* from_other_thread = nullptr;
  std::thread t([&] { from_other_thread = &Sweeper::Default(); });
  t.join();
  EXPECT_EQ(&Sweeper::Default(), &Sweeper::Default());
  EXPECT_EQ(from_other_thread, &Sweeper::Default());
  EXPECT_GT(Sweeper::Default().interval().count(), 0);
}

TEST(SweeperTest, BackgroundThreadStartsOnFirstRegisterAndStopJoinsIt) {
  Sweeper sweeper(Sweeper::Options::Every(milliseconds(1)));
  EXPECT_FALSE(sweeper.thread_running());
  ExitWatchingSweepable cache;
  SweeperAccess::Register(sweeper, &cache);
  EXPECT_TRUE(sweeper.thread_running());
  cache.WaitForVisit();  // The thread runs epochs on its own.

  sweeper.Stop();
  EXPECT_FALSE(sweeper.thread_running());
  EXPECT_TRUE(cache.thread_exited());  // Joined: the thread has ended.
  EXPECT_GE(sweeper.epochs(), 1u);     // The epoch that visited `cache` is complete.

  // After Stop() the thread is not started again, and SweepNow() still works.
  CountingSweepable late;
  SweeperAccess::Register(sweeper, &late);
  EXPECT_FALSE(sweeper.thread_running());
  sweeper.SweepNow();
  EXPECT_EQ(late.count(), 1);
  SweeperAccess::Unregister(sweeper, &late);
  SweeperAccess::Unregister(sweeper, &cache);
}

TEST(SweeperTest, StopWithoutThreadIsHarmless) {
  Sweeper sweeper(Sweeper::Options::Every(milliseconds(1)));
  sweeper.Stop();
  EXPECT_FALSE(sweeper.thread_running());
  sweeper.Stop();  // Idempotent.
  sweeper.SweepNow();
  EXPECT_EQ(sweeper.epochs(), 1u);
}

TEST(SweeperTest, DestroyingABackgroundSweeperJoinsItsThread) {
  ExitWatchingSweepable cache;
  auto sweeper = std::make_unique<Sweeper>(Sweeper::Options::Every(milliseconds(1)));
  SweeperAccess::Register(*sweeper, &cache);
  EXPECT_TRUE(sweeper->thread_running());
  cache.WaitForVisit();
  SweeperAccess::Unregister(*sweeper, &cache);
  sweeper.reset();
  EXPECT_TRUE(cache.thread_exited());
}

TEST(SweeperTest, RegisteringFromInsideASweepDoesNotDeadlock) {
  Sweeper sweeper(Foreground());
  CountingSweepable inner;

  // Registers `inner` during its first epoch, as a pooled object's destructor that uses a
  // pool for the first time would.
  class RegisteringSweepable final : public Sweepable {
   public:
    RegisteringSweepable(Sweeper* sweeper, Sweepable* inner) : sweeper_(sweeper), inner_(inner) {}
    void SweepEpoch(const Epoch& /*epoch*/) override {
      if (!done_) SweeperAccess::Register(*sweeper_, inner_);
      done_ = true;
    }

   private:
    Sweeper* const sweeper_;
    Sweepable* const inner_;
    bool done_ = false;
  } outer(&sweeper, &inner);

  SweeperAccess::Register(sweeper, &outer);
  std::thread t([&] { sweeper.SweepNow(); });
  t.join();
  const int after_first = inner.count();  // Visited in that epoch or not: both are allowed.
  EXPECT_LE(after_first, 1);
  sweeper.SweepNow();
  EXPECT_EQ(inner.count(), after_first + 1);
  EXPECT_EQ(sweeper.epochs(), 2u);
  SweeperAccess::Unregister(sweeper, &inner);
  SweeperAccess::Unregister(sweeper, &outer);
}

TEST(SweeperTest, RegisterFromAnotherThreadDuringASweepDoesNotWait) {
  Sweeper sweeper(Foreground());
  BlockingSweepable blocker;
  CountingSweepable newcomer;
  SweeperAccess::Register(sweeper, &blocker);
  std::thread sweeping([&] { sweeper.SweepNow(); });
  blocker.WaitUntilEntered();
  SweeperAccess::Register(sweeper, &newcomer);  // Must return while the sweep is blocked.
  EXPECT_FALSE(blocker.finished());
  blocker.Release();
  sweeping.join();
  EXPECT_TRUE(blocker.finished());

  const int before = newcomer.count();
  sweeper.SweepNow();
  EXPECT_EQ(newcomer.count(), before + 1);
  SweeperAccess::Unregister(sweeper, &newcomer);
  SweeperAccess::Unregister(sweeper, &blocker);
}

TEST(SweeperTest, UnregisterWaitsForTheVisitInProgress) {
  Sweeper sweeper(Foreground());
  BlockingSweepable blocker;
  SweeperAccess::Register(sweeper, &blocker);
  std::thread sweeping([&] { sweeper.SweepNow(); });
  blocker.WaitUntilEntered();

  std::atomic<pid_t> unregistering_tid{0};
  std::atomic<bool> unregistered{false};
  bool finished_when_unregistered = false;
  std::thread unregistering([&] {
    unregistering_tid.store(gettid());
    SweeperAccess::Unregister(sweeper, &blocker);
    finished_when_unregistered = blocker.finished();
    unregistered.store(true);
  });
  // Until that thread either returns from Unregister() or falls asleep, which it does only in
  // Unregister(), waiting for the visit (nothing it locks on the way is held by another
  // thread). While the visit is blocked, Unregister() must not return: it is asleep.
  pid_t tid = 0;
  while ((tid = unregistering_tid.load()) == 0) std::this_thread::yield();
  while (!unregistered.load() && !Asleep(tid)) std::this_thread::yield();
  EXPECT_FALSE(unregistered.load());
  // Released only now, so that an Unregister() that did not wait would have read the visit
  // unfinished.
  blocker.Release();
  unregistering.join();
  sweeping.join();
  EXPECT_TRUE(finished_when_unregistered);

  CountingSweepable other;
  SweeperAccess::Register(sweeper, &other);
  sweeper.SweepNow();
  EXPECT_EQ(other.count(), 1);
  EXPECT_EQ(blocker.visits(), 1);
  SweeperAccess::Unregister(sweeper, &other);
}

}  // namespace
}  // namespace syncpool
