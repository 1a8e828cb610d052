// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The per-CPU caches under what interrupts restartable sequences, on both per-CPU paths
// (restartable sequences where the process can use them, and the locked fallback):
//   - threads migrating between real CPUs (sched_setaffinity) while they hold blocks;
//   - timer signals delivered to every worker thread every few microseconds;
//   - a CPU whose cache holds blocks but on which no thread of the process may run any more
//     (sweeps, Trim() and Clear() must still empty it);
//   - a steal of one real CPU's victim generation by a thread pinned to another.
// Every block is accounted for: no pointer is handed to two holders at once, a pattern written
// by its holder is intact when it is given back, and the upstream holds nothing at the end.

#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "gtest/gtest.h"
#include "syncpool/internal/mutex.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "held_set.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::HeldSet;
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

// The CPUs this thread may run on.
std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// Restricts the calling thread to `cpus`; returns whether the kernel accepted it.
bool SetAffinity(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// Pins the calling thread to `cpu`; returns whether it now runs there.
bool PinTo(int cpu) { return SetAffinity({cpu}) && sched_getcpu() == cpu; }

// Restores the calling thread's affinity when the scope ends.
class ScopedAffinity {
 public:
  ScopedAffinity() { sched_getaffinity(0, sizeof(saved_), &saved_); }
  ScopedAffinity(const ScopedAffinity&) = delete;
  ScopedAffinity& operator=(const ScopedAffinity&) = delete;
  ~ScopedAffinity() { EXPECT_EQ(sched_setaffinity(0, sizeof(saved_), &saved_), 0); }

 private:
  cpu_set_t saved_;
};

// A 128-byte pooled object that counts its constructions and destructions.
struct Obj {
  static constexpr size_t kWords = 16;
  static inline std::atomic<uint64_t> constructed{0};
  static inline std::atomic<uint64_t> destroyed{0};
  Obj() { constructed.fetch_add(1, std::memory_order_relaxed); }
  ~Obj() { destroyed.fetch_add(1, std::memory_order_relaxed); }
  uint64_t words[kWords] = {};
};

constexpr size_t kSizes[] = {16, 64, 256, 1024};  // Four size classes, filled in words.


// An upstream, a sweeper without a thread, a resource and a pool over them, and what the
// workers did with them.
struct Fixture {
  explicit Fixture(bool allow_rseq, uint32_t max_blocks = 8) {
    Obj::constructed = 0;
    Obj::destroyed = 0;
    Options options;
    options.sweeper = &sweeper;
    options.debug_checks = false;  // Keep the per-CPU fast paths.
    options.allow_rseq = allow_rseq;
    options.mode = CacheMode::kPerCpu;  // Per-CPU caches, whatever SYNCPOOL_MODE says.
    options.max_blocks_per_class = max_blocks;
    // One block per miss: the tests follow each block from where it was placed.
    options.refill_bytes = 0;
    resource = std::make_unique<PoolResource>(options, &upstream);
    pool = std::make_unique<Pool<Obj>>([] { return std::make_unique<Obj>(); }, nullptr, options);
    const bool rseq = allow_rseq && internal::RseqUsable();
    EXPECT_EQ(resource->uses_rseq(), rseq);
    EXPECT_EQ(pool->uses_rseq(), rseq);
  }

  // Checks the statistics against the operations, sweeps everything out, destroys the pool
  // and the resource, and checks the upstream holds nothing.
  void ExpectAllAccounted() {
    EXPECT_FALSE(failed.load());
    EXPECT_EQ(held.size(), 0u);
    const Stats ps = pool->GetStats();
    EXPECT_EQ(ps.misses, Obj::constructed.load()) << ps.DebugString();
    // A pop sequence restarted after counting its hit counts it twice (cpu_cache.h).
    if (pool->uses_rseq()) {
      EXPECT_GE(ps.hits + ps.misses, gets.load()) << ps.DebugString();
    } else {
      EXPECT_EQ(ps.hits + ps.misses, gets.load()) << ps.DebugString();
    }
    EXPECT_EQ(Obj::constructed.load(), Obj::destroyed.load() + ps.cached_blocks());
    EXPECT_EQ(Obj::destroyed.load(), ps.spills + ps.swept_blocks) << ps.DebugString();
    const Stats rs = resource->GetStats();
    EXPECT_EQ(upstream.allocations(), rs.misses + rs.refilled) << rs.DebugString();
    EXPECT_EQ(upstream.deallocations(), rs.spills + rs.swept_blocks) << rs.DebugString();
    EXPECT_EQ(upstream.live_blocks(), rs.cached_blocks()) << rs.DebugString();
    EXPECT_EQ(upstream.live_bytes(), rs.cached_bytes()) << rs.DebugString();
    sweeper.SweepNow();
    sweeper.SweepNow();
    EXPECT_EQ(pool->GetStats().cached_blocks(), 0u);
    EXPECT_EQ(resource->GetStats().cached_blocks(), 0u);
    EXPECT_EQ(Obj::constructed.load(), Obj::destroyed.load());
    EXPECT_EQ(upstream.live_blocks(), 0u);
    ExpectUpstreamEmptyAfterDestruction();
  }

  void ExpectUpstreamEmptyAfterDestruction() {
    pool.reset();
    resource.reset();
    EXPECT_EQ(Obj::constructed.load(), Obj::destroyed.load());
    EXPECT_EQ(upstream.live_bytes(), 0u);
    EXPECT_EQ(upstream.live_blocks(), 0u);
    EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
  }

  TrackingResource upstream;
  Sweeper sweeper{Sweeper::Options::Manual()};
  std::unique_ptr<PoolResource> resource;
  std::unique_ptr<Pool<Obj>> pool;
  HeldSet held;
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> gets{0};
};

// One worker's window of held objects and blocks, taken and given back at random.
class Churner {
 public:
  Churner(Fixture* f, int index) : f_(f), index_(index), rng_(index + 1) {}
  ~Churner() {
    for (Item& item : items_) GiveBack(item);
    f_->gets.fetch_add(gets_);
  }

  // Takes or gives back one object or block; false once any worker failed.
  bool Step() {
    if (items_.size() < window_ && (items_.empty() || rng_() % 2 == 0)) {
      items_.emplace_back();
      if (!Take(items_.back())) items_.pop_back();
    } else {
      std::swap(items_[rng_() % items_.size()], items_.back());
      GiveBack(items_.back());
      items_.pop_back();
    }
    if (rng_() % 64 == 0) window_ = 1 + rng_() % 6;
    return !f_->failed.load(std::memory_order_relaxed);
  }

 private:
  struct Item {
    Pool<Obj>::Handle handle;  // A pool object, or empty for a resource block.
    void* block = nullptr;
    size_t bytes = 0;
    uint64_t tag = 0;
  };

  static uint64_t Word(uint64_t tag, size_t i) { return tag * 0x9e3779b97f4a7c15 + i; }
  static uint64_t* Words(Item& item) {
    return item.handle ? item.handle->words : static_cast<uint64_t*>(item.block);
  }
  static size_t NumWords(const Item& item) { return item.handle ? Obj::kWords : item.bytes / 8; }

  bool Fail(const std::string& what) {
    f_->failed.store(true);
    ADD_FAILURE() << "worker " << index_ << ": " << what;
    return false;
  }

  bool Take(Item& item) {
    item.tag = (uint64_t{static_cast<uint32_t>(index_)} << 32) | ++sequence_;
    void* p;
    if (rng_() % 2 == 0) {
      item.handle = f_->pool->Get();
      ++gets_;
      if (!item.handle) return Fail("Get() returned no object");
      p = item.handle.get();
    } else {
      item.bytes = kSizes[rng_() % std::size(kSizes)];
      item.block = f_->resource->allocate(item.bytes);
      p = item.block;
    }
    if (!f_->held.Insert(p)) {
      item.handle.release().release();  // Another holder owns it: leave it alone.
      return Fail("a held pointer was handed out again");
    }
    for (size_t i = 0; i < NumWords(item); ++i) Words(item)[i] = Word(item.tag, i);
    return true;
  }

  void GiveBack(Item& item) {
    for (size_t i = 0; i < NumWords(item); ++i) {
      if (Words(item)[i] != Word(item.tag, i)) {
        Fail("pattern overwritten at word " + std::to_string(i) + " while held");
        break;
      }
    }
    const void* p = item.handle ? static_cast<const void*>(item.handle.get()) : item.block;
    if (!f_->held.Erase(p)) Fail("a held pointer left the held set");
    if (item.handle) {
      item.handle.reset();
    } else {
      f_->resource->deallocate(item.block, item.bytes);
    }
  }

  Fixture* const f_;
  const int index_;
  std::mt19937_64 rng_;
  std::vector<Item> items_;
  size_t window_ = 4;
  uint64_t sequence_ = 0;
  uint64_t gets_ = 0;
};

// Runs `body(i)` on `n` threads while this thread sweeps, until all of them return.
void RunWhileSweeping(Fixture& f, int n, const std::function<void(int)>& body) {
  internal::Mutex mu;
  std::condition_variable cv;
  int running = n;  // Guarded by mu.
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      body(i);
      internal::MutexLock l(&mu);
      if (--running == 0) cv.notify_one();
    });
  }
  mu.Lock();
  while (!mu.AwaitWithTimeout(cv, std::chrono::milliseconds(1),
                              [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return running == 0; })) {
    mu.Unlock();
    f.sweeper.SweepNow();
    mu.Lock();
  }
  mu.Unlock();
  for (std::thread& t : threads) t.join();
}

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
  RunWhileSweeping(f, NumWorkers(), [&](int index) {
    ScopedAffinity restore;
    std::minstd_rand rng(index + 1);
    size_t next = static_cast<size_t>(index) % cpus.size();
    int until_move = 0;
    Churner churner(&f, index);  // Gives everything back before the affinity is restored.
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
  RunWhileSweeping(f, num_workers, [&](int index) {
    std::atomic<uint64_t>* mine = &signals[static_cast<size_t>(index)];
    Churner churner(&f, index);
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
    std::vector<Pool<Obj>::Handle> objects;
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
    EXPECT_EQ(f.upstream.live_blocks(), n);
    EXPECT_EQ(Obj::constructed.load() - Obj::destroyed.load(), n);
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
  EXPECT_EQ(Obj::constructed.load(), 2 * kBlocks);

  // And so does destroying the resource and the pool.
  PlaceOnCpu(f, last, kBlocks);
  expect_cached(kBlocks);
  f.ExpectUpstreamEmptyAfterDestruction();
}

TEST_P(RseqTest, AMissLeavesAnotherRealCpusCacheAloneAndTheEpochsDrainIt) {
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask";
  constexpr int kBlocks = 8;
  Fixture f(GetParam(), /*max_blocks=*/kBlocks);
  const Placed placed = PlaceOnCpu(f, cpus.back(), kBlocks);
  const uint64_t upstream_allocations = f.upstream.allocations();
  f.sweeper.SweepNow();  // The placed blocks become victims on their CPU.

  // Another CPU misses: it makes new blocks and objects and takes nothing from the CPU that
  // holds the placed ones (no remote operation on an ordinary allocation).
  Placed got;
  std::vector<Pool<Obj>::Handle> objects;
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
  EXPECT_EQ(f.upstream.allocations(), upstream_allocations + kBlocks);
  EXPECT_EQ(Obj::constructed.load(), uint64_t{2 * kBlocks});
  EXPECT_EQ(f.resource->GetStats().misses, uint64_t{2 * kBlocks});
  EXPECT_EQ(f.resource->GetStats().cached_blocks(), uint64_t{kBlocks});
  EXPECT_EQ(f.pool->GetStats().cached_blocks(), uint64_t{kBlocks});

  // Nobody used that CPU during the epoch: the next one drains it.
  f.sweeper.SweepNow();
  EXPECT_EQ(f.resource->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(f.pool->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(Obj::constructed.load() - Obj::destroyed.load(), uint64_t{kBlocks});

  for (void* b : got.blocks) f.resource->deallocate(b, 64);
  objects.clear();
  f.ExpectUpstreamEmptyAfterDestruction();
}

INSTANTIATE_TEST_SUITE_P(BothPaths, RseqTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Rseq" : "Locked";
                         });

}  // namespace
}  // namespace syncpool
