// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Concurrency stress: many threads (four per hardware thread) get and put Pool<T> objects and
// allocate and deallocate PoolResource blocks of several size classes and alignments, while a
// background sweeper runs every millisecond and the test thread sweeps too. Every object and
// block is checked for exclusive ownership:
//   - on acquisition it must not be held by anyone else (a global set of held pointers);
//   - while held it carries a pattern unique to its holder and acquisition, checked just
//     before it is given back, so a second holder writing into it is seen.
// At the end every object and block is accounted for: objects made == destroyed + cached,
// the statistics agree with the operations made, and the upstream holds nothing once the pool
// and the resource are gone.
//
// Iterations per thread: SYNCPOOL_STRESS_ITERATIONS when set, else a fixed default, smaller
// under sanitizers.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "gtest/gtest.h"
#include "syncpool/internal/mutex.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "syncpool/testing/fake_cpu.h"
#include "held_set.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::HeldSet;
using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

int IterationsPerThread() {
  if (const char* env = std::getenv("SYNCPOOL_STRESS_ITERATIONS"); env != nullptr) {
    return std::max(1, std::atoi(env));
  }
#ifdef SYNCPOOL_SANITIZER
  return 20000;
#else
  return 60000;
#endif
}

// A 256-byte pooled object that counts its constructions and destructions.
struct Buffer {
  static constexpr uint64_t kAlive = 0xa11ce0b1ec7a11e5;
  static constexpr uint64_t kDead = 0xdeadb10cdeadb10c;
  static constexpr size_t kWords = 31;
  static inline std::atomic<uint64_t> constructed{0};
  static inline std::atomic<uint64_t> destroyed{0};

  Buffer() { constructed.fetch_add(1, std::memory_order_relaxed); }
  ~Buffer() {
    magic = kDead;
    destroyed.fetch_add(1, std::memory_order_relaxed);
  }

  uint64_t magic = kAlive;
  uint64_t words[kWords] = {};
};
static_assert(sizeof(Buffer) == 256);


uint64_t PatternWord(uint64_t tag, size_t i) { return tag * 0x9e3779b97f4a7c15 + i; }

void Fill(uint64_t* words, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; ++i) words[i] = PatternWord(tag, i);
}

// The index of the first word that lost its pattern, or n.
size_t FirstMismatch(const uint64_t* words, size_t n, uint64_t tag) {
  for (size_t i = 0; i < n; ++i) {
    if (words[i] != PatternWord(tag, i)) return i;
  }
  return n;
}

struct Request {
  size_t bytes;
  size_t alignment;
};
// Pooled sizes and alignments. Their sizes are multiples of 8, so blocks are filled in words.
constexpr Request kPooled[] = {{16, 8},     {16, 16},    {104, 8},   {104, 16},
                               {1000, 16},  {1000, 64},  {4096, 8},  {4096, 64},
                               {65536, 16}, {65536, 64}};
// Served by the upstream directly: above max_block_size, and over-aligned.
constexpr Request kDirect[] = {{300000, 16}, {256, 128}};

struct Held {
  Pool<Buffer>::Handle handle;  // A pool object, or empty for a resource block.
  void* block = nullptr;
  Request request = {};
  uint64_t tag = 0;
};

// Everything the worker threads share, and what they did.
struct Shared {
  Pool<Buffer>* pool;
  PoolResource* resource;
  HeldSet held;
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> pool_gets{0};
  std::atomic<uint64_t> pooled_allocations{0};
  std::atomic<uint64_t> direct_allocations{0};
  std::atomic<uint64_t> dropped{0};  // Pool objects released from the pool and deleted.
};

class Worker {
 public:
  Worker(Shared* shared, int index, bool fake_cpus)
      : s_(shared), index_(index), fake_cpus_(fake_cpus), rng_(index + 1) {}

  void Run(int iterations) {
    std::optional<ScopedFakeCpu> cpu;
    const int num_cpus = ScopedFakeCpu::NumCpus();
    const int shared_ids = std::min(num_cpus, 4);  // Few ids: threads share caches.
    std::vector<Held> held;
    size_t window = 1 + rng_() % 8;
    for (int i = 0; i < iterations && !s_->failed.load(std::memory_order_relaxed); ++i) {
      if (fake_cpus_ && i % 64 == 0) {
        // Migrate while holding blocks: they go back on another CPU than they came from.
        const int phase = i / 64;
        const int id = (index_ + phase) % shared_ids;
        cpu.reset();
        cpu.emplace(phase % 2 == 0 ? id : num_cpus - 1 - id);
      }
      if (held.size() < window && (held.empty() || rng_() % 2 == 0)) {
        held.emplace_back();
        if (!Acquire(held.back())) held.pop_back();
      } else {
        const size_t victim = rng_() % held.size();
        std::swap(held[victim], held.back());
        GiveBack(held.back());
        held.pop_back();
      }
      if (rng_() % 32 == 0) window = 1 + rng_() % 8;
    }
    for (Held& h : held) GiveBack(h);
    s_->pool_gets.fetch_add(pool_gets_);
    s_->pooled_allocations.fetch_add(pooled_allocations_);
    s_->direct_allocations.fetch_add(direct_allocations_);
    s_->dropped.fetch_add(dropped_);
  }

 private:
  // Records a failure and stops every worker; returns false.
  bool Fail(const std::string& what) {
    s_->failed.store(true);
    ADD_FAILURE() << "thread " << index_ << ": " << what;
    return false;
  }

  bool Acquire(Held& h) {
    h.tag = (uint64_t{static_cast<uint32_t>(index_)} << 32) | ++sequence_;
    const uint32_t kind = rng_() % 100;
    void* p;
    size_t words;
    if (kind < 40) {
      h.handle = s_->pool->Get();
      ++pool_gets_;
      if (!h.handle) return Fail("Get() returned no object");
      if (h.handle->magic != Buffer::kAlive) return Fail("Get() returned a dead object");
      p = h.handle.get();
      words = Buffer::kWords;
    } else {
      if (kind < 98) {
        h.request = kPooled[rng_() % std::size(kPooled)];
        ++pooled_allocations_;
      } else {
        h.request = kDirect[rng_() % std::size(kDirect)];
        ++direct_allocations_;
      }
      h.block = kind % 2 == 0 ? s_->resource->allocate(h.request.bytes, h.request.alignment)
                              : s_->resource->Allocate(h.request.bytes, h.request.alignment);
      if (reinterpret_cast<uintptr_t>(h.block) % h.request.alignment != 0) {
        Fail("misaligned block of " + std::to_string(h.request.bytes));
      }
      p = h.block;
      words = h.request.bytes / 8;
    }
    if (const uint64_t other = s_->held.Acquire(p, h.tag); other != 0) {
      // Leave it alone (and leaked): the other holder owns it.
      h.handle.release().release();
      return Fail("handed out while thread " + std::to_string(other >> 32) + " holds it");
    }
    Fill(Words(h), words, h.tag);
    return true;
  }

  void GiveBack(Held& h) {
    const void* p = h.handle ? static_cast<const void*>(h.handle.get()) : h.block;
    const size_t words = h.handle ? Buffer::kWords : h.request.bytes / 8;
    if (const size_t bad = FirstMismatch(Words(h), words, h.tag); bad != words) {
      Fail("pattern overwritten at word " + std::to_string(bad) + " of " +
           std::to_string(words) + " while held");
    }
    if (!s_->held.Release(p, h.tag)) Fail("held pointer missing from the held set");
    if (h.handle) {
      const uint32_t how = rng_() % 16;
      if (how == 0) {
        ++dropped_;
        h.handle.release().reset();  // Taken out of the pool for good.
      } else if (how < 5) {
        s_->pool->Put(h.handle.release());
      } else {
        h.handle.reset();
      }
    } else if (h.tag % 2 == 0) {
      s_->resource->deallocate(h.block, h.request.bytes, h.request.alignment);
    } else {
      s_->resource->Deallocate(h.block, h.request.bytes, h.request.alignment);
    }
  }

  static uint64_t* Words(Held& h) {
    return h.handle ? h.handle->words : static_cast<uint64_t*>(h.block);
  }

  Shared* const s_;
  const int index_;
  const bool fake_cpus_;
  std::mt19937_64 rng_;
  uint64_t sequence_ = 0;
  uint64_t pool_gets_ = 0;
  uint64_t pooled_allocations_ = 0;
  uint64_t direct_allocations_ = 0;
  uint64_t dropped_ = 0;
};

void RunStress(bool fake_cpus, bool allow_rseq) {
  Buffer::constructed = 0;
  Buffer::destroyed = 0;
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
  auto pool = std::make_unique<Pool<Buffer>>([] { return std::make_unique<Buffer>(); },
                                             nullptr, options);
  Shared shared;
  shared.pool = pool.get();
  shared.resource = resource.get();

  const int num_threads = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int iterations = IterationsPerThread();
  internal::Mutex done_mu;
  std::condition_variable done_cv;
  int running = num_threads;  // Guarded by done_mu.
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&, t] {
      Worker(&shared, t, fake_cpus).Run(iterations);
      internal::MutexLock l(&done_mu);
      if (--running == 0) done_cv.notify_one();
    });
  }
  // Sweep from this thread too, racing the background thread and the workers.
  done_mu.Lock();
  while (!done_mu.AwaitWithTimeout(done_cv, std::chrono::milliseconds(2),
                                   [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return running == 0; })) {
    done_mu.Unlock();
    sweeper.SweepNow();
    done_mu.Lock();
  }
  done_mu.Unlock();
  for (std::thread& t : threads) t.join();
  // Exact figures need every thread that touches the caches stopped, the sweeper's included
  // (an epoch releases blocks before it adds them to the swept counts).
  sweeper.Stop();

  EXPECT_FALSE(shared.failed.load());
  EXPECT_EQ(shared.held.size(), 0u);
  EXPECT_GT(shared.pool_gets.load(), 0u);
  EXPECT_GT(shared.pooled_allocations.load(), 0u);

  // Every object: made on a miss, and either cached, or destroyed by a spill, a sweep or its
  // last holder.
  // In the rseq mode a restarted pop may count its hit twice (stats.h): hits are a bound there.
  const Stats ps = pool->GetStats();
  if (pool->uses_rseq()) {
    EXPECT_GE(ps.hits + ps.misses, shared.pool_gets.load()) << ps.DebugString();
  } else {
    EXPECT_EQ(ps.hits + ps.misses, shared.pool_gets.load()) << ps.DebugString();
  }
  EXPECT_EQ(Buffer::constructed.load(), ps.misses) << ps.DebugString();
  EXPECT_EQ(Buffer::constructed.load(), Buffer::destroyed.load() + ps.cached_blocks())
      << ps.DebugString();
  EXPECT_EQ(Buffer::destroyed.load(), ps.spills + ps.swept_blocks + shared.dropped.load())
      << ps.DebugString();

  // Every block: obtained upstream on a miss (or directly), and either cached or returned by
  // a spill, a sweep or a direct deallocate.
  const Stats rs = resource->GetStats();
  const uint64_t direct = shared.direct_allocations.load();
  if (resource->uses_rseq()) {
    EXPECT_GE(rs.hits + rs.misses, shared.pooled_allocations.load()) << rs.DebugString();
  } else {
    EXPECT_EQ(rs.hits + rs.misses, shared.pooled_allocations.load()) << rs.DebugString();
  }
  EXPECT_EQ(upstream.allocations(), rs.misses + rs.refilled + direct) << rs.DebugString();
  EXPECT_EQ(upstream.deallocations(), rs.spills + rs.swept_blocks + direct) << rs.DebugString();
  EXPECT_EQ(upstream.live_blocks(), rs.cached_blocks()) << rs.DebugString();
  EXPECT_EQ(upstream.live_bytes(), rs.cached_bytes()) << rs.DebugString();

  // Two epochs release whatever is cached.
  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(pool->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(Buffer::constructed.load(), Buffer::destroyed.load());
  EXPECT_EQ(resource->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);

  pool.reset();
  resource.reset();
  EXPECT_EQ(upstream.live_bytes(), 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
}

// Each scenario runs on both per-CPU paths: restartable sequences (where available; otherwise
// this repeats the locked path) and the locked fallback, forced.
class StressTest : public ::testing::TestWithParam<bool> {};

TEST_P(StressTest, ThreadsOnRealCpus) { RunStress(/*fake_cpus=*/false, GetParam()); }

TEST_P(StressTest, ThreadsMigratingBetweenFakeCpus) { RunStress(/*fake_cpus=*/true, GetParam()); }

INSTANTIATE_TEST_SUITE_P(BothPaths, StressTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Rseq" : "Locked";
                         });

}  // namespace
}  // namespace syncpool
