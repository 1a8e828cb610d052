// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Thread exit: 10,000 short-lived threads use pools, and no memory is left behind.
//
// Threads start in batches of four at a time (on the CPUs they are given, no fake CPUs); each
// allocates and deallocates blocks of most size classes (and one request above
// max_block_size) through two PoolResources over a TrackingResource, one with debug checks
// off (restartable sequences where usable, else per-thread caches, as in the _perthread twin)
// and one with them on (the locked mode), then a burst of 64 blocks of one class at once from
// the first, and gets and puts objects of a Pool<T> whose objects hold a block of the first
// resource. Then it exits, leaving whatever it freed cached: on the CPUs it ran on, or, with
// per-thread caches, in the shared layer, where its column goes when it exits (for the
// classes PoolResource keeps in spans, which have no shared layer, back in their spans).
//
// After every batch (the threads joined, so the statistics are exact):
//   - every block is cached or free in its span (nothing is in use then): every class here is
//     at most kMaxBlockSize (1 KiB), so PoolResource keeps all of them in spans (src/spans.h),
//     and the upstream holds exactly the resources' spans (the one request above
//     max_block_size goes back at once), while what is out of the spans (span_block_bytes
//     less span_free_bytes) is exactly what the caches hold, plus, for `fast`, the blocks of
//     the pool's cached objects: no block was lost with a thread;
//   - what the caches hold stays within what they can hold, whatever number of threads came
//     and went: per size class used, two generations of the per-CPU capacity on every CPU
//     plus the TransferStack's two generations of twice the per-CPU capacity (docs/design.md;
//     the classes kept in spans have no TransferStack, so for them this is generous), and as
//     many objects for the pool. The bursts make the threads of one batch hold several times
//     what the caches of that class may keep, so the bound is met because the caches honour
//     their capacities, not because the threads used little;
//   - the spans the upstream holds stay within a bound that does not grow with the threads
//     either (MaxSpanBytes()): a shard takes a span from upstream only when all of its spans
//     of that class are full, so per class and shard it holds at most what the most blocks
//     ever out of the spans at once fill, plus one span per thread of the batch (each may
//     take one while the others do).
// Every 100 batches the test thread runs a sweep (SweepNow(), no sleeping). At the end, after
// Clear() and Trim(), the upstream holds nothing and every pooled object was destroyed; the
// upstream saw no deallocate with a wrong pointer, size or alignment. Under --config=asan,
// leak checking at exit covers the rest of the process (no per-thread state left behind).
//
// 10,000 threads in every configuration; under ThreadSanitizer each thread makes one round
// of requests instead of three (thread creation and the checking of every access dominate).

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <memory_resource>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "syncpool/internal/size_class.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"
#include "tests/counted.h"
#include "tests/tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::internal::ClassSize;
using ::syncpool::internal::RequestClass;
using ::syncpool::testing::Counted;
using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

constexpr int kThreads = 10000;
// Threads alive at once.
constexpr int kBatch = 4;
// Allocation rounds per thread.
#ifdef ABSL_HAVE_THREAD_SANITIZER
constexpr int kRounds = 1;
#else
constexpr int kRounds = 3;
#endif

// Small caches, so that the bound is tight and threads fill them.
constexpr size_t kMaxBlockSize = 1024;
constexpr uint32_t kMaxBlocksPerClass = 8;
constexpr size_t kPerCpuClassBytes = 1024;

Options ResourceOptions(Sweeper* sweeper, bool debug_checks) {
  Options options;
  options.sweeper = sweeper;
  options.max_block_size = kMaxBlockSize;
  options.max_blocks_per_class = kMaxBlocksPerClass;
  options.per_cpu_class_bytes = kPerCpuClassBytes;
  options.debug_checks = debug_checks;
  return options;
}

Options PoolOptions(Sweeper* sweeper) {
  Options options;
  options.sweeper = sweeper;
  options.max_blocks_per_class = kMaxBlocksPerClass;
  options.debug_checks = false;
  return options;
}

// Copies of a cache's per-CPU capacity it can hold at most: two generations on each CPU, and
// two generations of twice that in the TransferStack.
uint64_t CapacityCopies() { return 2 * static_cast<uint64_t>(ScopedFakeCpu::NumCpus()) + 4; }

// The most bytes a resource with ResourceOptions() caches in the classes of `requests`
// (nothing is ever cached in the others): per class, min(max_blocks_per_class, max(2,
// per_cpu_class_bytes / size)) blocks per CPU and generation (options.h).
uint64_t MaxCachedBytes(const std::vector<std::pair<size_t, size_t>>& requests) {
  std::set<size_t> classes;
  for (const auto& [bytes, alignment] : requests) {
    if (bytes <= kMaxBlockSize && alignment <= kMaxPooledAlignment) {
      classes.insert(RequestClass(bytes, alignment));
    }
  }
  uint64_t total = 0;
  for (size_t c : classes) {
    const uint64_t per_cpu = std::min<uint64_t>(
        kMaxBlocksPerClass, std::max<uint64_t>(2, kPerCpuClassBytes / ClassSize(c)));
    total += CapacityCopies() * per_cpu * ClassSize(c);
  }
  return total;
}

// The size of a span of the class of `bytes`-byte blocks (as internal::SpanBytes() in
// src/spans.h): 64 KiB, or room for 32 blocks rounded up to a power of two where that is more.
uint64_t SpanBytesOf(size_t block) {
  return std::max<uint64_t>(64 * 1024, std::bit_ceil(uint64_t{32} * block));
}

// The most bytes of spans a resource holds from upstream when, per class, at most
// `out_blocks[class]` blocks are out of its spans (cached or in use) at any time, and no sweep
// gives wholly free spans back. A shard (one per CPU) decides to take a span of a class from
// upstream only when every span it holds of that class is full (at most out / capacity of
// them), and it takes it with its lock released, so each thread that decided so meanwhile
// adds one: at most kBatch threads run at once, so a shard holds at most
// out / capacity + kBatch spans of a class. A span's header, colour and bitmap take less than
// 4 KiB of it, which bounds its capacity from below.
uint64_t MaxSpanBytes(const std::map<size_t, uint64_t>& out_blocks) {
  const uint64_t shards = static_cast<uint64_t>(std::max(ScopedFakeCpu::NumCpus(), 1));
  uint64_t total = 0;
  for (const auto& [cls, out] : out_blocks) {
    const uint64_t span = SpanBytesOf(ClassSize(cls));
    const uint64_t capacity = (span - 4096) / ClassSize(cls);
    total += shards * (out / capacity + kBatch) * span;
  }
  return total;
}

// Per class of `requests` (those a resource with ResourceOptions() serves from its classes),
// the most blocks out of the spans at once: what the caches may hold of that class, every CPU
// and thread slot of the batch with two generations, and what the batch's threads hold in use,
// `per_thread` blocks each time the class appears in `requests`.
std::map<size_t, uint64_t> MaxOutBlocks(
    const std::vector<std::pair<size_t, size_t>>& requests,
    const std::vector<uint64_t>& per_thread) {
  std::map<size_t, uint64_t> out;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& [bytes, alignment] = requests[i];
    if (bytes > kMaxBlockSize || alignment > kMaxPooledAlignment) continue;
    out[RequestClass(bytes, alignment)] += uint64_t{kBatch} * per_thread[i];
  }
  const uint64_t caches =
      2 * (static_cast<uint64_t>(ScopedFakeCpu::NumCpus()) + kBatch + 1) + 4;
  for (auto& [cls, blocks] : out) {
    blocks += caches * std::min<uint64_t>(
                           kMaxBlocksPerClass,
                           std::max<uint64_t>(2, kPerCpuClassBytes / ClassSize(cls)));
  }
  return out;
}

// A pooled object holding a block of a resource; counts constructions and destructions.
struct Buffer : Counted<Buffer> {
  static constexpr size_t kBytes = 300;

  explicit Buffer(PoolResource* r) : resource(r), block(r->allocate(kBytes)) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { resource->deallocate(block, kBytes); }

  PoolResource* const resource;
  void* const block;
};

// Requests each thread makes of both resources: most classes, some alignments, and one
// request above max_block_size.
constexpr std::pair<size_t, size_t> kRequests[] = {
    {8, 8},    {16, 16},  {40, 8},  {64, 64},  {100, 4},  {128, 16},  {200, 8},
    {256, 32}, {300, 16}, {500, 8}, {700, 64}, {1000, 8}, {1024, 16}, {3000, 16},
};
// Then a burst from the first resource: more blocks of one class at once than its caches can
// hold (the batch's threads together hold several times the bound of that class), so that
// what the caches keep, and not what the threads happened to use, is what the bound tests.
constexpr size_t kBurstBytes = 960;
constexpr int kBurstBlocks = 64;

// One short-lived thread's work.
void Work(PoolResource& fast, PoolResource& checked, Pool<Buffer>& pool, int id) {
  struct Held {
    PoolResource* r;
    void* p;
    size_t bytes;
    size_t alignment;
  };
  std::vector<Held> held;
  held.reserve(std::max<size_t>(2 * std::size(kRequests) * 2, kBurstBlocks));
  for (int round = 0; round < kRounds; ++round) {
    for (PoolResource* r : {&fast, &checked}) {
      for (const auto& [bytes, alignment] : kRequests) {
        void* p = r->allocate(bytes, alignment);
        std::memset(p, id & 0xff, bytes);
        held.push_back(Held{r, p, bytes, alignment});
        // Half of them twice, so that the caches see more than one block per class.
        if ((id + round) % 2 == 0) {
          void* q = r->allocate(bytes, alignment);
          held.push_back(Held{r, q, bytes, alignment});
        }
      }
    }
    // Free in an order that depends on the thread, so caches fill from both ends.
    if (id % 3 == 0) std::reverse(held.begin(), held.end());
    for (const Held& h : held) h.r->deallocate(h.p, h.bytes, h.alignment);
    held.clear();

    for (int i = 0; i < kBurstBlocks; ++i) {
      void* p = fast.allocate(kBurstBytes);
      std::memset(p, id & 0xff, kBurstBytes);
      held.push_back(Held{&fast, p, kBurstBytes, alignof(std::max_align_t)});
    }
    for (const Held& h : held) h.r->deallocate(h.p, h.bytes, h.alignment);
    held.clear();

    std::vector<Pool<Buffer>::Handle> handles;
    for (int i = 0; i < 1 + id % 4; ++i) handles.push_back(pool.Get());
    if (id % 5 == 0 && !handles.empty()) {
      std::unique_ptr<Buffer> kept = handles.back().release();  // Kept for good...
      handles.pop_back();
      pool.Put(std::move(kept));  // ...then given back.
    }
  }
}

TEST(ThreadExitTest, ShortLivedThreadsLeaveNothingBehind) {
  TrackingResource upstream;
  const uint64_t constructed_before = Buffer::constructed();
  const uint64_t destroyed_before = Buffer::destroyed();
  {
    Sweeper sweeper(Sweeper::Options::Manual());
    PoolResource fast(ResourceOptions(&sweeper, /*debug_checks=*/false), &upstream);
    PoolResource checked(ResourceOptions(&sweeper, /*debug_checks=*/true), &upstream);
    Pool<Buffer> pool([&fast] { return std::make_unique<Buffer>(&fast); }, nullptr,
                      PoolOptions(&sweeper));

    const uint64_t buffer_block =
        ClassSize(RequestClass(Buffer::kBytes, alignof(std::max_align_t)));
    // The bound: what each resource can cache in the classes it serves (`fast` also gets the
    // blocks of the pool's objects back when they are destroyed), and the blocks of `fast`
    // that the pool's cached objects hold.
    std::vector<std::pair<size_t, size_t>> fast_requests(std::begin(kRequests),
                                                         std::end(kRequests));
    fast_requests.emplace_back(kBurstBytes, alignof(std::max_align_t));
    fast_requests.emplace_back(Buffer::kBytes, alignof(std::max_align_t));
    const uint64_t bound = MaxCachedBytes(fast_requests) +
                           MaxCachedBytes({std::begin(kRequests), std::end(kRequests)}) +
                           CapacityCopies() * kMaxBlocksPerClass * buffer_block;
    // What the upstream may hold: the spans of both resources. Each thread holds at once up to
    // two blocks of each request of each resource, a burst of `fast`, and up to four of the
    // pool's objects, each with a block of `fast`; the pool's cached objects hold theirs.
    std::vector<uint64_t> fast_per_thread(std::size(kRequests), 2);
    fast_per_thread.push_back(kBurstBlocks);
    fast_per_thread.push_back(4);
    std::map<size_t, uint64_t> fast_out = MaxOutBlocks(fast_requests, fast_per_thread);
    fast_out[RequestClass(Buffer::kBytes, alignof(std::max_align_t))] +=
        CapacityCopies() * kMaxBlocksPerClass;
    const uint64_t span_bound =
        MaxSpanBytes(fast_out) +
        MaxSpanBytes(MaxOutBlocks({std::begin(kRequests), std::end(kRequests)},
                                  std::vector<uint64_t>(std::size(kRequests), 2)));
    uint64_t peak = 0;
    int threads = 0;
    for (int batch = 0; threads < kThreads; ++batch) {
      std::vector<std::thread> running;
      for (int i = 0; i < kBatch && threads < kThreads; ++i, ++threads) {
        running.emplace_back(Work, std::ref(fast), std::ref(checked), std::ref(pool), threads);
      }
      for (std::thread& t : running) t.join();
      if (batch % 100 == 99) sweeper.SweepNow();

      // Nothing is in use now: the upstream holds exactly the spans of the two resources, and
      // what is out of the spans is exactly what the caches hold (the pool's objects each hold
      // one block of `fast`); both are bounded.
      const Stats f = fast.GetStats();
      const Stats c = checked.GetStats();
      const uint64_t pool_blocks = pool.GetStats().cached_blocks();
      const uint64_t live = upstream.live_bytes();
      ASSERT_EQ(live, f.span_bytes + c.span_bytes) << "after " << threads << " threads";
      ASSERT_EQ(f.span_block_bytes - f.span_free_bytes,
                f.cached_bytes() + pool_blocks * buffer_block)
          << "after " << threads << " threads\n"
          << f.DebugString();
      ASSERT_EQ(c.span_block_bytes - c.span_free_bytes, c.cached_bytes())
          << "after " << threads << " threads\n"
          << c.DebugString();
      const uint64_t cached = f.cached_bytes() + c.cached_bytes() + pool_blocks * buffer_block;
      ASSERT_LE(cached, bound) << "after " << threads << " threads";
      ASSERT_LE(live, span_bound) << "after " << threads << " threads";
      ASSERT_LE(pool_blocks, CapacityCopies() * kMaxBlocksPerClass);
      peak = std::max(peak, live);
    }
    EXPECT_EQ(threads, kThreads);
    std::cout << "threads: " << threads << " in batches of " << kBatch << ", " << kRounds
              << " rounds each; upstream peak " << peak << " bytes, bound " << bound << " bytes ("
              << ScopedFakeCpu::NumCpus() << " CPUs), spans bound " << span_bound
              << " bytes; upstream allocations "
              << upstream.allocations() << "; debug checks off: " << fast.GetStats().mode
              << ", on: " << checked.GetStats().mode << "\n";
    RecordProperty("threads", threads);
    RecordProperty("peak_bytes", std::to_string(peak));
    RecordProperty("bound_bytes", std::to_string(bound));
    RecordProperty("span_bound_bytes", std::to_string(span_bound));

    pool.Clear();
    fast.Trim();
    checked.Trim();
    EXPECT_EQ(upstream.live_bytes(), 0u);
    EXPECT_EQ(upstream.live_blocks(), 0u);
    // Every thread went upstream at least for its requests above max_block_size.
    EXPECT_GE(upstream.allocations(), uint64_t{2} * kThreads * kRounds);
  }
  EXPECT_EQ(upstream.live_bytes(), 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
  EXPECT_EQ(Buffer::constructed() - constructed_before,
            Buffer::destroyed() - destroyed_before);
}

}  // namespace
}  // namespace syncpool
