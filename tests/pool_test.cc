// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of Pool<T>: Get, Put and New, handles, the reset hook, victim semantics driven by
// SweepNow(), statistics, capacity, and the happens-before edge from Put to Get.

#include "syncpool/pool.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"

namespace syncpool {
namespace {

using ::syncpool::testing::ScopedFakeCpu;

// What happened to Tracked objects: how many were made and destroyed, and the thread that
// destroyed the last one. Threads that touch it are joined before it is read.
struct Counters {
  int made = 0;
  int destroyed = 0;
  std::thread::id destroyer;
};

// An instrumented pooled type.
class Tracked {
 public:
  explicit Tracked(Counters* counters) : counters_(counters) { ++counters_->made; }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    counters_->destroyer = std::this_thread::get_id();
    ++counters_->destroyed;
  }

  int value = 0;

 private:
  Counters* const counters_;
};

class PoolTest : public ::testing::Test {
 protected:
  Options PoolOptions(uint32_t max_blocks_per_class = 128) {
    Options options;
    options.sweeper = &sweeper_;
    options.max_blocks_per_class = max_blocks_per_class;
    return options;
  }

  // A New function that makes Tracked objects and counts its calls.
  Pool<Tracked>::NewFunction TrackedNew() {
    return [this] {
      ++new_calls_;
      return std::make_unique<Tracked>(&counters_);
    };
  }

  Sweeper sweeper_{Sweeper::Options::Manual()};
  Counters counters_;
  int new_calls_ = 0;
};

TEST_F(PoolTest, GetWithoutNewOnEmptyPoolIsEmpty) {
  Pool<Tracked> pool(nullptr, nullptr, PoolOptions());
  Pool<Tracked>::Handle h = pool.Get();
  EXPECT_FALSE(h);
  EXPECT_EQ(h.get(), nullptr);
}

TEST_F(PoolTest, NewReturningNullGivesEmptyHandle) {
  int calls = 0;
  Pool<int> pool(
      [&calls] {
        ++calls;
        return std::unique_ptr<int>();
      },
      nullptr, PoolOptions());
  EXPECT_FALSE(pool.Get());
  EXPECT_EQ(calls, 1);
}

TEST_F(PoolTest, GetCallsNewWhenEmpty) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  Pool<Tracked>::Handle a = pool.Get();
  Pool<Tracked>::Handle b = pool.Get();
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(new_calls_, 2);
}

TEST_F(PoolTest, HandlePutsBackOnScopeExit) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  Tracked* first = nullptr;
  {
    Pool<Tracked>::Handle h = pool.Get();
    first = h.get();
    h->value = 7;
  }
  EXPECT_EQ(pool.GetStats().primary_blocks, 1u);
  Pool<Tracked>::Handle again = pool.Get();
  EXPECT_EQ(again.get(), first);
  EXPECT_EQ(again->value, 7);  // No reset hook: the object comes back as it was left.
  EXPECT_EQ(new_calls_, 1);
  EXPECT_EQ(counters_.destroyed, 0);
}

TEST_F(PoolTest, HandleResetPutsBackNow) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  Pool<Tracked>::Handle h = pool.Get();
  Tracked* obj = h.get();
  h.reset();
  EXPECT_FALSE(h);
  EXPECT_EQ(pool.Get().get(), obj);
  EXPECT_EQ(new_calls_, 1);
}

TEST_F(PoolTest, ReleaseKeepsTheObjectOutOfThePool) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  std::unique_ptr<Tracked> kept;
  {
    Pool<Tracked>::Handle h = pool.Get();
    kept = h.release();
    EXPECT_FALSE(h);
  }
  ASSERT_NE(kept, nullptr);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  Pool<Tracked>::Handle next = pool.Get();
  EXPECT_NE(next.get(), kept.get());
  EXPECT_EQ(new_calls_, 2);
  EXPECT_EQ(counters_.destroyed, 0);
}

TEST_F(PoolTest, HandleMoveSemantics) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  Pool<Tracked>::Handle a = pool.Get();
  Pool<Tracked>::Handle b = pool.Get();
  Tracked* obj_a = a.get();
  Tracked* obj_b = b.get();

  Pool<Tracked>::Handle c(std::move(b));  // Move construction transfers ownership.
  EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move): a moved-from Handle is empty.
  EXPECT_EQ(c.get(), obj_b);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);

  a = std::move(c);  // Puts obj_a back and takes obj_b.
  EXPECT_FALSE(c);   // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.get(), obj_b);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 1u);
  EXPECT_EQ(pool.Get().get(), obj_a);
  EXPECT_EQ(new_calls_, 2);
  EXPECT_EQ(counters_.destroyed, 0);
}

TEST_F(PoolTest, PutUniquePtrCachesAndPutNullIsNoOp) {
  Pool<Tracked> pool(nullptr, nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  auto obj = std::make_unique<Tracked>(&counters_);
  Tracked* raw = obj.get();
  pool.Put(std::move(obj));
  pool.Put(nullptr);
  const Stats stats = pool.GetStats();
  EXPECT_EQ(stats.primary_blocks, 1u);
  EXPECT_EQ(stats.primary_bytes, sizeof(Tracked));
  EXPECT_EQ(stats.spills, 0u);
  Pool<Tracked>::Handle h = pool.Get();
  EXPECT_EQ(h.get(), raw);
  EXPECT_FALSE(pool.Get());  // Put(nullptr) cached nothing.
}

TEST_F(PoolTest, ResetHookRunsOnPutOnThePuttingThread) {
  std::thread::id reset_thread;
  Pool<std::string> pool(
      [] { return std::make_unique<std::string>(); },
      [&reset_thread](std::string& s) {
        reset_thread = std::this_thread::get_id();
        s.clear();
      },
      PoolOptions());
  std::thread::id putter;
  std::thread t([&] {
    ScopedFakeCpu cpu(0);
    putter = std::this_thread::get_id();
    Pool<std::string>::Handle h = pool.Get();
    h->assign("dirty");
  });
  t.join();
  EXPECT_EQ(reset_thread, putter);
  EXPECT_NE(reset_thread, std::this_thread::get_id());

  ScopedFakeCpu cpu(0);
  Pool<std::string>::Handle h = pool.Get();
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->empty());
  EXPECT_EQ(pool.GetStats().hits, 1u);
}

TEST_F(PoolTest, ThrowingResetDestroysTheObjectAndPropagates) {
  Pool<Tracked> pool(
      TrackedNew(), [](Tracked&) { throw std::runtime_error("reset failed"); }, PoolOptions());
  ScopedFakeCpu cpu(0);
  EXPECT_THROW(pool.Put(std::make_unique<Tracked>(&counters_)), std::runtime_error);
  EXPECT_EQ(counters_.destroyed, 1);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  Pool<Tracked>::Handle h = pool.Get();  // Nothing was cached: New runs.
  EXPECT_TRUE(h);
  EXPECT_EQ(new_calls_, 1);
  std::unique_ptr<Tracked> released = h.release();  // Its Put would throw in ~Handle.
}

TEST_F(PoolTest, ThrowingNewPropagatesAndLeavesThePoolUnchanged) {
  bool fail = true;
  Pool<Tracked> pool(
      [&]() -> std::unique_ptr<Tracked> {
        if (fail) throw std::runtime_error("new failed");
        return std::make_unique<Tracked>(&counters_);
      },
      nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  EXPECT_THROW(pool.Get(), std::runtime_error);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  EXPECT_EQ(counters_.made, 0);

  fail = false;
  Tracked* obj = nullptr;
  {
    Pool<Tracked>::Handle h = pool.Get();
    ASSERT_TRUE(h);
    obj = h.get();
  }
  EXPECT_EQ(pool.Get().get(), obj);
  EXPECT_EQ(counters_.destroyed, 0);
}

TEST_F(PoolTest, UnusedObjectSurvivesOneSweepAndDiesAfterTwo) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  {
    ScopedFakeCpu cpu(0);
    pool.Put(std::make_unique<Tracked>(&counters_));
  }
  sweeper_.SweepNow();
  EXPECT_EQ(counters_.destroyed, 0);
  Stats stats = pool.GetStats();
  EXPECT_EQ(stats.victim_blocks, 1u);
  EXPECT_EQ(stats.victim_bytes, sizeof(Tracked));

  std::thread::id sweeping_thread;
  std::thread t([&] {
    sweeping_thread = std::this_thread::get_id();
    sweeper_.SweepNow();
  });
  t.join();
  EXPECT_EQ(counters_.destroyed, 1);
  EXPECT_EQ(counters_.destroyer, sweeping_thread);
  stats = pool.GetStats();
  EXPECT_EQ(stats.cached_blocks(), 0u);
  EXPECT_EQ(stats.swept_blocks, 1u);
  EXPECT_EQ(stats.swept_bytes, sizeof(Tracked));
  EXPECT_EQ(stats.epochs, 2u);
}

TEST_F(PoolTest, ObjectFoundAfterOneSweep) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  Tracked* obj = nullptr;
  {
    Pool<Tracked>::Handle h = pool.Get();
    obj = h.get();
  }
  sweeper_.SweepNow();
  EXPECT_EQ(pool.Get().get(), obj);
  EXPECT_EQ(new_calls_, 1);
  EXPECT_EQ(counters_.destroyed, 0);
}

TEST_F(PoolTest, ClearDestroysEveryCachedObject) {
  Pool<Tracked> pool(nullptr, nullptr, PoolOptions());
  for (int cpu_id = 0; cpu_id < ScopedFakeCpu::NumCpus() && cpu_id < 2; ++cpu_id) {
    ScopedFakeCpu cpu(cpu_id);
    pool.Put(std::make_unique<Tracked>(&counters_));
    pool.Put(std::make_unique<Tracked>(&counters_));
  }
  sweeper_.SweepNow();  // Some in the victim generation too.
  ScopedFakeCpu cpu(0);
  pool.Put(std::make_unique<Tracked>(&counters_));
  const int made = counters_.made;
  pool.Clear();
  EXPECT_EQ(counters_.destroyed, made);
  EXPECT_EQ(counters_.destroyer, std::this_thread::get_id());
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  EXPECT_FALSE(pool.Get());
}

TEST_F(PoolTest, DestructionDestroysCachedObjects) {
  {
    Pool<Tracked> pool(nullptr, nullptr, PoolOptions());
    ScopedFakeCpu cpu(0);
    pool.Put(std::make_unique<Tracked>(&counters_));
    sweeper_.SweepNow();
    pool.Put(std::make_unique<Tracked>(&counters_));
    pool.Put(std::make_unique<Tracked>(&counters_));
    EXPECT_EQ(counters_.destroyed, 0);
  }
  EXPECT_EQ(counters_.destroyed, 3);
  sweeper_.SweepNow();  // The pool left the sweeper.
  EXPECT_EQ(counters_.destroyed, 3);
}

TEST_F(PoolTest, StatsCountHitsAndMisses) {
  Pool<Tracked> pool(TrackedNew(), nullptr, PoolOptions());
  ScopedFakeCpu cpu(0);
  { Pool<Tracked>::Handle h = pool.Get(); }  // Miss: New.
  { Pool<Tracked>::Handle h = pool.Get(); }  // Hit.
  { Pool<Tracked>::Handle h = pool.Get(); }  // Hit.
  const Stats stats = pool.GetStats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, static_cast<uint64_t>(new_calls_));
  EXPECT_EQ(stats.primary_blocks, 1u);
}

TEST_F(PoolTest, FullCachesDestroyAtOnce) {
  // Two objects per CPU, four in the pool's TransferStack: the seventh is destroyed at once.
  Pool<Tracked> pool(nullptr, nullptr, PoolOptions(/*max_blocks_per_class=*/2));
  ScopedFakeCpu cpu(0);
  for (int i = 0; i < 6; ++i) pool.Put(std::make_unique<Tracked>(&counters_));
  EXPECT_EQ(counters_.destroyed, 0);
  pool.Put(std::make_unique<Tracked>(&counters_));
  EXPECT_EQ(counters_.destroyed, 1);
  EXPECT_EQ(counters_.destroyer, std::this_thread::get_id());
  const Stats stats = pool.GetStats();
  EXPECT_EQ(stats.spills, 1u);
  EXPECT_EQ(stats.primary_blocks, 6u);
}

TEST_F(PoolTest, InvalidOptionsThrow) {
  EXPECT_THROW(Pool<int>(nullptr, nullptr, PoolOptions(/*max_blocks_per_class=*/0)),
               std::invalid_argument);
}

// A Put happens before the Get that returns the same object (pool.h), with nothing else between
// the threads: a writer fills new strings and puts them, while a reader, running at the same
// time, spins on Get() until it has obtained kObjects of them, and checks what the writer
// wrote. They meet only in the pool: the pool has no New (the reader gets nothing but the
// writer's strings), a relaxed flag that orders nothing tells the writer to stop, and the joins
// come after the reader's checks. Caches of one object per CPU (or thread) pass the writer's
// strings on to the TransferStack at once, where the reader finds them whatever its CPU or
// thread. A missing release or acquire on the way is a data race on the strings' bytes, which
// ThreadSanitizer reports (the contents alone would rarely show it on x86). With debug checks
// off (the rseq or per-thread caches) and on (the locked mode).
class PutGetTest : public ::testing::TestWithParam<bool> {};

TEST_P(PutGetTest, PutHappensBeforeGetAcrossThreads) {
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.debug_checks = GetParam();
  options.max_blocks_per_class = 1;
  Pool<std::string> pool(nullptr, nullptr, options);
  constexpr int kObjects = 200;
  constexpr size_t kLength = 1000;
  // Relaxed: they order nothing. `taken` keeps the writer about kAhead strings ahead of the
  // reader (no flood of Puts that the caches would only spill), but only as a pace: it goes on
  // after a while anyway, since a string it put may sit where the reader does not look.
  constexpr int kAhead = 2;
  std::atomic<int> taken{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      pool.Put(std::make_unique<std::string>(kLength, static_cast<char>('a' + n % 26)));
      for (int wait = 0; wait < 1000 && n - taken.load(std::memory_order_relaxed) >= kAhead &&
                         !stop.load(std::memory_order_relaxed);
           ++wait) {
        std::this_thread::yield();
      }
    }
  });
  int obtained = 0;
  int damaged = 0;
  std::thread reader([&] {
    while (obtained < kObjects) {
      Pool<std::string>::Handle h = pool.Get();
      if (!h) {
        std::this_thread::yield();  // Lets the writer run where the CPUs are few.
        continue;
      }
      taken.store(++obtained, std::memory_order_relaxed);
      const std::unique_ptr<std::string> s = h.release();  // Never back: each is the writer's.
      if (s->size() != kLength || s->front() < 'a' || s->front() > 'z' ||
          s->find_first_not_of(s->front()) != std::string::npos) {
        ++damaged;
      }
    }
    stop.store(true, std::memory_order_relaxed);
  });
  reader.join();
  writer.join();
  EXPECT_EQ(obtained, kObjects);
  EXPECT_EQ(damaged, 0);
}

INSTANTIATE_TEST_SUITE_P(DebugChecks, PutGetTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

}  // namespace
}  // namespace syncpool
