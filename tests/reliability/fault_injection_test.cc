// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Fault injection: an upstream that fails its N-th allocation, for every N over a whole
// scenario.
//
// The scenario (Scenario() below) runs on one thread, on fake CPUs, with a sweeper without a
// thread, so that it makes the same calls in the same order every time. It uses a
// PoolResource (size classes with several alignments, requests above max_block_size and above
// the pooled alignment, spills to the spans, spans taken from and given back upstream, capacity
// growth, SweepNow(), Trim()), std::pmr containers and a std::pmr::monotonic_buffer_resource
// over it, and four Pool<T>: one whose New allocates through the failing upstream, one whose
// New allocates through the PoolResource, one whose New fails by itself, and one whose reset
// hook allocates through the failing upstream. Every place where an allocation may fail
// (every allocation of the upstream, and each call of the New that fails by itself) is a
// fault point.
//
// A first run fails nothing and counts the fault points, K; a second must count as many (every
// run makes the same calls, so the N-th fault point names one call). Then for every N in 1..K
// the scenario runs again with the N-th fault point throwing std::bad_alloc. Each step of the
// scenario catches std::bad_alloc and goes on with the next one, so the rest of the scenario
// runs on a resource and pools that have seen the failure. Every run checks that:
//   - exactly one exception reached the scenario (none in the first run), a std::bad_alloc;
//   - an allocate that threw left the resource as it was (nothing cached moved, no span
//     taken or freed, nothing new upstream);
//   - at the end of every step, what the upstream holds is exactly the resource's spans and
//     the blocks of the objects the other pools cache, the spans' blocks not free are exactly
//     what the resource caches and resource_pool's objects hold (nothing of the scenario is
//     held then), and the caches stay within their capacities;
//   - afterwards the resource and every pool still work: an allocate and a deallocate, a Get
//     and a Put, on every fake CPU used, and a freed block or object is found again;
//   - once everything is released (Trim() and Clear(), or destruction alone, alternately)
//     the upstream holds no block and saw no deallocate with a wrong pointer, size or
//     alignment. Under --config=asan, leak checking covers the rest of the process too.
// It runs with debug checks off (restartable sequences where usable; fake CPUs then use the
// remote operations), with debug checks on (every call through the slow paths and the misuse
// registry), and with restartable sequences turned off.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <ostream>
#include <string>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/internal/size_class.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"
#include "tests/tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::internal::ClassSize;
using ::syncpool::internal::RequestClass;
using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

// An upstream that counts fault points and throws std::bad_alloc at one of them: every
// allocation through it is one, and so is every call of Point() (a New that fails by itself).
// Forwards to a TrackingResource, which records what is live. One thread only.
class FailingResource final : public std::pmr::memory_resource {
 public:
  explicit FailingResource(std::pmr::memory_resource* upstream) : upstream_(upstream) {}

  // The fault point numbered `n` (from 1) throws, once; 0: none does.
  void FailAt(uint64_t n) { fail_at_ = n; }

  // Fault points so far (the one that threw included), and the allocations that reached the
  // upstream.
  uint64_t points() const { return points_; }
  uint64_t allocations() const { return allocations_; }
  // Whether the fault point that was to throw has thrown.
  bool failed() const { return fail_at_ != 0 && points_ >= fail_at_; }

  // A fault point that allocates nothing.
  void Point() {
    if (++points_ == fail_at_) throw std::bad_alloc();
  }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    Point();
    ++allocations_;
    return upstream_->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    upstream_->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::pmr::memory_resource* const upstream_;
  uint64_t fail_at_ = 0;
  uint64_t points_ = 0;
  uint64_t allocations_ = 0;
};

// A pooled object that owns one block of `kBytes` from a memory resource.
struct Payload {
  static constexpr size_t kBytes = 200;
  static constexpr size_t kAlignment = 8;

  explicit Payload(std::pmr::memory_resource* r)
      : resource(r), block(r->allocate(kBytes, kAlignment)) {
    std::memset(block, 0x5a, kBytes);
  }
  Payload(const Payload&) = delete;
  Payload& operator=(const Payload&) = delete;
  ~Payload() { resource->deallocate(block, kBytes, kAlignment); }

  // Replaces the block by a new one (the reset hook of one pool): the new one first, so that
  // a failure leaves the object whole.
  void Renew() {
    void* fresh = resource->allocate(kBytes, kAlignment);
    resource->deallocate(block, kBytes, kAlignment);
    block = fresh;
  }

  std::pmr::memory_resource* const resource;
  void* block;
};

// A pooled object that owns nothing.
struct Plain {
  uint64_t words[4] = {};
};

// How the resource and the pools are configured.
struct Config {
  const char* name;
  bool debug_checks;
  bool allow_rseq;
};

void PrintTo(const Config& config, std::ostream* os) { *os << config.name; }

// The resource's options: few blocks per CPU and class, starting at half of that so that
// capacities grow, and Puts spill; small classes, all of them kept in spans (a span is one
// upstream allocation for many blocks, src/spans.h).
constexpr size_t kMaxBlockSize = 4096;
constexpr uint32_t kMaxBlocksPerClass = 4;
constexpr size_t kPerCpuClassBytes = 1024;
// Each pool caches at most this many objects per CPU and generation.
constexpr uint32_t kPoolBlocksPerClass = 2;

Options ResourceOptions(const Config& config, Sweeper* sweeper) {
  Options options;
  options.sweeper = sweeper;
  options.max_block_size = kMaxBlockSize;
  options.max_blocks_per_class = kMaxBlocksPerClass;
  options.initial_blocks_per_class = kMaxBlocksPerClass / 2;
  options.per_cpu_class_bytes = kPerCpuClassBytes;
  // One upstream call per miss: every fault point is a call whose failure reaches the
  // scenario (a refill's later calls fail quietly; pool_resource_test covers them).
  options.refill_bytes = 0;
  options.allow_rseq = config.allow_rseq;
  options.debug_checks = config.debug_checks;
  return options;
}

Options PoolOptions(const Config& config, Sweeper* sweeper) {
  Options options;
  options.sweeper = sweeper;
  options.max_blocks_per_class = kPoolBlocksPerClass;
  options.initial_blocks_per_class = kPoolBlocksPerClass / 2;
  options.allow_rseq = config.allow_rseq;
  options.debug_checks = config.debug_checks;
  return options;
}

// The most blocks a cache with per-CPU capacities `caps` can hold: two generations per CPU,
// and two of twice the per-CPU capacity in each TransferStack (docs/design.md).
uint64_t MaxCachedBlocks(uint64_t sum_of_caps) {
  return sum_of_caps * (2 * static_cast<uint64_t>(ScopedFakeCpu::NumCpus()) + 4);
}

// Sum over the resource's classes of the most a CPU may hold per class and generation, as
// options.h defines it: min(max_blocks_per_class, max(2, per_cpu_class_bytes / class size)).
// (The TransferStacks hold twice the starting capacity per generation, which is less.)
uint64_t ResourceCapacitySum() {
  const size_t classes = RequestClass(kMaxBlockSize, kMaxPooledAlignment) + 1;
  uint64_t sum = 0;
  for (size_t c = 0; c < classes; ++c) {
    const uint64_t by_bytes = std::max<uint64_t>(2, kPerCpuClassBytes / ClassSize(c));
    sum += std::min<uint64_t>(kMaxBlocksPerClass, by_bytes);
  }
  return sum;
}

// Everything one run uses, over `tracking`. Members are destroyed in reverse order: the pools
// (whose objects hold blocks of the resource and of the upstream) before the resource, the
// resource before its sweeper and upstream.
struct Env {
  Env(const Config& config, TrackingResource* tracking)
      : failing(tracking),
        resource(ResourceOptions(config, &sweeper), &failing),
        upstream_pool([this] { return std::make_unique<Payload>(&failing); }, nullptr,
                      PoolOptions(config, &sweeper)),
        resource_pool([this] { return std::make_unique<Payload>(&resource); },
                      [](Payload& p) { std::memset(p.block, 0, Payload::kBytes); },
                      PoolOptions(config, &pool_sweeper)),
        self_failing_pool(
            [this] {
              failing.Point();
              return std::make_unique<Plain>();
            },
            nullptr, PoolOptions(config, &sweeper)),
        reset_pool([this] { return std::make_unique<Payload>(&failing); },
                   [](Payload& p) { p.Renew(); }, PoolOptions(config, &sweeper)) {}

  // Sweeps every cache, in a fixed order.
  void SweepNow() {
    sweeper.SweepNow();
    pool_sweeper.SweepNow();
  }

  FailingResource failing;
  // Sweeps the resource and the pools whose objects do not use it. The order in which one
  // sweeper visits its caches is not fixed, and a sweep of resource_pool gives blocks back to
  // the resource: it has a sweeper of its own, so that every run makes the same calls.
  Sweeper sweeper{Sweeper::Options::Manual()};
  Sweeper pool_sweeper{Sweeper::Options::Manual()};
  PoolResource resource;
  // New allocates through the failing upstream.
  Pool<Payload> upstream_pool;
  // New allocates through the resource (and so, on a miss, through the failing upstream).
  Pool<Payload> resource_pool;
  // New fails by itself (a fault point) before it makes an object.
  Pool<Plain> self_failing_pool;
  // The reset hook allocates through the failing upstream, so Put() may throw: objects go
  // back with an explicit Put(), never from a Handle's destructor (which must not throw).
  Pool<Payload> reset_pool;
};

// The second fake CPU (the first when there is only one).
int OtherCpu() { return ScopedFakeCpu::NumCpus() > 1 ? 1 : 0; }

// The largest class PoolResource keeps in spans (internal::kSpanMaxClassSize, src/spans.h):
// every class of the resource here (kMaxBlockSize), so each of its blocks lives in a span
// taken upstream, and only requests that go straight upstream are single blocks there.
constexpr size_t kSpanMaxClassSize = 4096;
static_assert(kMaxBlockSize <= kSpanMaxClassSize, "the identities below need every class in spans");

// The bytes of the resource's blocks the pools hold: resource_pool's objects own one each.
uint64_t ResourceBytesInPools(const Env& env) {
  const uint64_t payload_in_resource =
      ClassSize(RequestClass(Payload::kBytes, Payload::kAlignment));
  return env.resource_pool.GetStats().cached_blocks() * payload_in_resource;
}

// What the upstream must hold when the scenario holds nothing: the resource's spans (which
// hold every block it caches, and those of the objects resource_pool caches), and the blocks
// of the objects the other pools cache.
uint64_t ExpectedUpstreamBytes(const Env& env) {
  return env.resource.GetStats().span_bytes +
         (env.upstream_pool.GetStats().cached_blocks() +
          env.reset_pool.GetStats().cached_blocks()) *
             Payload::kBytes;
}

// Checks what holds whenever the scenario holds nothing.
void CheckInvariants(const Env& env, const TrackingResource& tracking, const char* where) {
  SCOPED_TRACE(where);
  EXPECT_EQ(tracking.live_bytes(), ExpectedUpstreamBytes(env));
  // The blocks of the spans that are not free are exactly those the resource caches and
  // those resource_pool's objects hold: none is lost, none is free twice.
  const Stats stats = env.resource.GetStats();
  EXPECT_LE(stats.span_block_bytes, stats.span_bytes);
  EXPECT_LE(stats.span_free_bytes, stats.span_block_bytes);
  EXPECT_EQ(stats.span_block_bytes - stats.span_free_bytes,
            stats.cached_bytes() + ResourceBytesInPools(env));
  EXPECT_TRUE(tracking.errors().empty()) << tracking.errors().front();
  EXPECT_LE(env.resource.GetStats().cached_blocks(), MaxCachedBlocks(ResourceCapacitySum()));
  for (uint64_t cached :
       {env.upstream_pool.GetStats().cached_blocks(), env.resource_pool.GetStats().cached_blocks(),
        env.self_failing_pool.GetStats().cached_blocks(),
        env.reset_pool.GetStats().cached_blocks()}) {
    EXPECT_LE(cached, MaxCachedBlocks(kPoolBlocksPerClass));
  }
}

// A block the scenario holds.
struct Held {
  void* p;
  size_t bytes;
  size_t alignment;
};

// Allocates from the resource and writes the block. When the allocation throws, checks that
// the resource is as it was: nothing cached moved and nothing new was kept upstream.
class Allocator {
 public:
  Allocator(Env& env, const TrackingResource& tracking) : env_(env), tracking_(tracking) {}
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;
  ~Allocator() { FreeAll(); }

  void* Allocate(size_t bytes, size_t alignment) {
    const Stats before = env_.resource.GetStats();
    const size_t live_blocks = tracking_.live_blocks();
    void* p;
    try {
      p = env_.resource.allocate(bytes, alignment);
    } catch (const std::bad_alloc&) {
      const Stats after = env_.resource.GetStats();
      EXPECT_EQ(after.cached_blocks(), before.cached_blocks());
      EXPECT_EQ(after.cached_bytes(), before.cached_bytes());
      EXPECT_EQ(after.hits, before.hits);
      EXPECT_EQ(after.direct, before.direct);
      // A span that failed to come from upstream left the span layer as it was.
      EXPECT_EQ(after.span_bytes, before.span_bytes);
      EXPECT_EQ(after.span_free_bytes, before.span_free_bytes);
      EXPECT_EQ(tracking_.live_blocks(), live_blocks);
      throw;
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << bytes << "/" << alignment;
    std::memset(p, 0xa5, bytes);
    held_.push_back(Held{p, bytes, alignment});
    return p;
  }

  // Deallocates every block held, the last first or the first first.
  void FreeAll(bool last_first = true) {
    if (last_first) {
      for (auto it = held_.rbegin(); it != held_.rend(); ++it) Free(*it);
    } else {
      for (const Held& h : held_) Free(h);
    }
    held_.clear();
  }

 private:
  void Free(const Held& h) { env_.resource.deallocate(h.p, h.bytes, h.alignment); }

  Env& env_;
  const TrackingResource& tracking_;
  std::vector<Held> held_;
};

// Pool<T>::Get() and Put(), checking that a call that throws leaves the pool as it was.
template <typename T>
typename Pool<T>::Handle Get(Pool<T>& pool) {
  const Stats before = pool.GetStats();
  try {
    return pool.Get();
  } catch (const std::bad_alloc&) {
    const Stats after = pool.GetStats();
    EXPECT_EQ(after.cached_blocks(), before.cached_blocks());
    EXPECT_EQ(after.hits, before.hits);
    throw;
  }
}
template <typename T>
void Put(Pool<T>& pool, std::unique_ptr<T> object) {
  const Stats before = pool.GetStats();
  try {
    pool.Put(std::move(object));
  } catch (const std::bad_alloc&) {
    // The reset hook threw: the object was destroyed, nothing was cached.
    EXPECT_EQ(pool.GetStats().cached_blocks(), before.cached_blocks());
    throw;
  }
}

// Sizes and alignments inside the classes, the limits included.
constexpr std::pair<size_t, size_t> kClassRequests[] = {
    {0, 1},    {1, 1},    {8, 8},     {16, 16},  {24, 8},    {100, 4},   {128, 32},
    {129, 64}, {500, 16}, {1000, 64}, {1500, 8}, {4000, 64}, {4096, 16}, {48, 64},
};
// Requests that go straight upstream: above max_block_size, or aligned above 64. The 20000-
// and 70000-byte ones are large enough to have their pages discarded on the way back.
constexpr std::pair<size_t, size_t> kDirectRequests[] = {
    {4097, 16}, {20000, 16}, {64, 128}, {256, 4096}, {70000, 64}, {0, 256},
};

using Step = std::pair<const char*, std::function<void(Env&, const TrackingResource&)>>;

// The scenario, step by step. Each step holds only what it declares: when it throws, its
// objects are released as the exception leaves it.
std::vector<Step> Scenario() {
  std::vector<Step> steps;
  steps.emplace_back("classes", [](Env& env, const TrackingResource& tracking) {
    Allocator a(env, tracking);
    {
      ScopedFakeCpu cpu(0);
      for (const auto& [bytes, alignment] : kClassRequests) a.Allocate(bytes, alignment);
      a.FreeAll();
      for (const auto& [bytes, alignment] : kClassRequests) a.Allocate(bytes, alignment);
    }
    ScopedFakeCpu cpu(OtherCpu());
    a.FreeAll(/*last_first=*/false);
  });
  steps.emplace_back("direct", [](Env& env, const TrackingResource& tracking) {
    ScopedFakeCpu cpu(0);
    Allocator a(env, tracking);
    for (const auto& [bytes, alignment] : kDirectRequests) a.Allocate(bytes, alignment);
    a.FreeAll();
  });
  steps.emplace_back("spill and transfer", [](Env& env, const TrackingResource& tracking) {
    Allocator a(env, tracking);
    {
      ScopedFakeCpu cpu(0);
      for (int i = 0; i < 20; ++i) a.Allocate(48, 16);
    }
    {
      // Four fit on the other CPU, the rest spill back to their spans (the classes kept in
      // spans have no TransferStack).
      ScopedFakeCpu cpu(OtherCpu());
      a.FreeAll();
    }
    ScopedFakeCpu cpu(0);
    for (int i = 0; i < 20; ++i) a.Allocate(48, 16);
    a.FreeAll(/*last_first=*/false);
  });
  steps.emplace_back("sweep, other CPUs, growth", [](Env& env, const TrackingResource& tracking) {
    Allocator a(env, tracking);
    {
      ScopedFakeCpu cpu(OtherCpu());
      for (int i = 0; i < 6; ++i) a.Allocate(200, 8);
      a.FreeAll();
    }
    env.SweepNow();  // The other CPU's blocks become victims.
    {
      ScopedFakeCpu cpu(0);
      for (int i = 0; i < 6; ++i) a.Allocate(200, 8);  // Misses: CPU 0 has none of them.
      a.FreeAll();
      for (int i = 0; i < 20; ++i) a.Allocate(200, 8);  // Beyond the starting capacity.
      a.FreeAll();  // The CPU's capacity grows.
    }
    env.SweepNow();
    env.SweepNow();  // Whatever nobody took is gone.
    ScopedFakeCpu cpu(0);
    for (int i = 0; i < 6; ++i) a.Allocate(200, 8);
    a.FreeAll();
  });
  steps.emplace_back("pmr containers", [](Env& env, const TrackingResource&) {
    ScopedFakeCpu cpu(0);
    std::pmr::vector<std::pmr::string> lines(&env.resource);
    for (int i = 0; i < 30; ++i) {
      lines.emplace_back(static_cast<size_t>(20 + 13 * i), static_cast<char>('a' + i % 26));
    }
    std::pmr::map<int, std::pmr::string> by_key(&env.resource);
    for (int i = 0; i < 20; ++i) by_key.emplace(i, lines[static_cast<size_t>(i)]);
    std::pmr::unordered_map<int, int> counts(&env.resource);
    for (int i = 0; i < 100; ++i) counts[i * 7] = i;
    std::pmr::vector<int64_t> numbers(&env.resource);  // Grows past max_block_size.
    for (int64_t i = 0; i < 2000; ++i) numbers.push_back(i);
    ScopedFakeCpu other(OtherCpu());
    // (Not shrink_to_fit(): libstdc++ swallows its allocation failures.)
    lines.erase(lines.begin(), lines.begin() + 10);
    std::pmr::vector<std::pmr::string> copy(lines, &env.resource);
    by_key.clear();
  });
  steps.emplace_back("pmr arena", [](Env& env, const TrackingResource&) {
    // A monotonic_buffer_resource over the resource: its buffers grow past max_block_size.
    // Alignments of at most 16 only, so that the padding it adds, and so how many buffers it
    // asks for, does not depend on where the buffers happen to lie.
    // (Not std::pmr::unsynchronized_pool_resource: libstdc++ 12's crashes when its upstream
    // throws during the first allocate(), whatever the upstream.)
    ScopedFakeCpu cpu(0);
    std::pmr::monotonic_buffer_resource arena(64, &env.resource);
    for (size_t i = 1; i <= 50; ++i) {
      void* p = arena.allocate(i * 37, i % 2 == 0 ? 16 : 8);
      std::memset(p, 0x3c, i * 37);
    }
    std::pmr::vector<std::pmr::string> words(&arena);
    for (int i = 0; i < 20; ++i) words.emplace_back(40, 'w');
  });
  steps.emplace_back("pool, New through the upstream", [](Env& env, const TrackingResource&) {
    std::vector<Pool<Payload>::Handle> handles;
    {
      ScopedFakeCpu cpu(0);
      for (int i = 0; i < 6; ++i) handles.push_back(Get(env.upstream_pool));
    }
    {
      ScopedFakeCpu cpu(OtherCpu());
      handles.clear();  // Two stay, two go to the TransferStack, the rest are destroyed.
    }
    ScopedFakeCpu cpu(0);
    for (int i = 0; i < 6; ++i) handles.push_back(Get(env.upstream_pool));
    std::unique_ptr<Payload> kept = handles.back().release();
    handles.pop_back();
    Put(env.upstream_pool, std::move(kept));
    handles.clear();
    env.SweepNow();
    for (int i = 0; i < 3; ++i) handles.push_back(Get(env.upstream_pool));
  });
  steps.emplace_back("pool, New through the resource", [](Env& env, const TrackingResource&) {
    std::vector<Pool<Payload>::Handle> handles;
    {
      ScopedFakeCpu cpu(OtherCpu());
      for (int i = 0; i < 6; ++i) handles.push_back(Get(env.resource_pool));
    }
    ScopedFakeCpu cpu(0);
    handles.clear();
    env.SweepNow();
    for (int i = 0; i < 6; ++i) handles.push_back(Get(env.resource_pool));
    handles.resize(2);
    env.resource_pool.Clear();
    for (int i = 0; i < 2; ++i) handles.push_back(Get(env.resource_pool));
  });
  steps.emplace_back("pool, New fails by itself", [](Env& env, const TrackingResource&) {
    std::vector<Pool<Plain>::Handle> handles;
    ScopedFakeCpu cpu(0);
    for (int i = 0; i < 5; ++i) handles.push_back(Get(env.self_failing_pool));
    handles.clear();
    for (int i = 0; i < 7; ++i) handles.push_back(Get(env.self_failing_pool));
  });
  steps.emplace_back("pool, reset hook allocates", [](Env& env, const TrackingResource&) {
    ScopedFakeCpu cpu(0);
    std::vector<std::unique_ptr<Payload>> objects;
    for (int i = 0; i < 4; ++i) objects.push_back(Get(env.reset_pool).release());
    for (std::unique_ptr<Payload>& object : objects) {
      // A reset that throws destroys the object and the exception leaves Put().
      Put(env.reset_pool, std::move(object));
    }
    objects.clear();
    for (int i = 0; i < 3; ++i) objects.push_back(Get(env.reset_pool).release());
    for (std::unique_ptr<Payload>& object : objects) Put(env.reset_pool, std::move(object));
  });
  steps.emplace_back("trim", [](Env& env, const TrackingResource& tracking) {
    env.resource.Trim();
    ScopedFakeCpu cpu(OtherCpu());
    Allocator a(env, tracking);
    for (const auto& [bytes, alignment] : kClassRequests) a.Allocate(bytes, alignment);
    a.FreeAll();
    env.resource.Trim();
    for (const auto& [bytes, alignment] : kClassRequests) a.Allocate(bytes, alignment);
  });
  steps.emplace_back("sweeps", [](Env& env, const TrackingResource& tracking) {
    for (int round = 0; round < 3; ++round) {
      Allocator a(env, tracking);
      ScopedFakeCpu cpu(round % 2 == 0 ? 0 : OtherCpu());
      for (int i = 0; i < 5; ++i) a.Allocate(64 * static_cast<size_t>(i + 1), 16);
      a.FreeAll();
      env.SweepNow();
    }
  });
  return steps;
}

// After the scenario: the resource and every pool still serve requests on every CPU used, and
// find again what was just given back.
void CheckStillWorks(Env& env) {
  for (int cpu_id : {0, OtherCpu()}) {
    ScopedFakeCpu cpu(cpu_id);
    for (const auto& [bytes, alignment] : kClassRequests) {
      void* p = env.resource.allocate(bytes, alignment);
      std::memset(p, 1, bytes);
      env.resource.deallocate(p, bytes, alignment);
      void* again = env.resource.allocate(bytes, alignment);
      EXPECT_EQ(again, p) << "a freed " << bytes << "-byte block was not reused";
      env.resource.deallocate(again, bytes, alignment);
    }
    for (const auto& [bytes, alignment] : kDirectRequests) {
      void* p = env.resource.allocate(bytes, alignment);
      std::memset(p, 1, bytes);
      env.resource.deallocate(p, bytes, alignment);
    }
    {
      std::pmr::vector<std::pmr::string> v(&env.resource);
      for (int i = 0; i < 10; ++i) v.emplace_back(100, 'x');
    }
    auto check_pool = [](auto& pool) {
      auto handle = pool.Get();
      ASSERT_TRUE(handle);
      auto* object = handle.get();
      handle.reset();
      auto again = pool.Get();
      EXPECT_EQ(again.get(), object) << "an object put back was not reused";
    };
    check_pool(env.upstream_pool);
    check_pool(env.resource_pool);
    check_pool(env.self_failing_pool);
    // The reset pool's objects go back with Put(): its hook may allocate.
    std::unique_ptr<Payload> object = Get(env.reset_pool).release();
    ASSERT_NE(object, nullptr);
    Payload* raw = object.get();
    Put(env.reset_pool, std::move(object));
    std::unique_ptr<Payload> again = Get(env.reset_pool).release();
    EXPECT_EQ(again.get(), raw);
    env.reset_pool.Put(std::move(again));
  }
}

struct RunResult {
  uint64_t points = 0;       // Fault points the run passed.
  uint64_t allocations = 0;  // Allocations that reached the upstream.
  int bad_allocs = 0;        // std::bad_alloc that reached the scenario.
  std::string failed_step;   // The step it left.
};

// Runs the scenario once with fault point `fail_at` failing (0: none), and checks it.
RunResult RunScenario(const Config& config, uint64_t fail_at) {
  RunResult result;
  TrackingResource tracking;
  {
    // Every operation runs on a fake CPU, this one unless a step names another, so that
    // every run uses the same caches.
    ScopedFakeCpu base_cpu(0);
    Env env(config, &tracking);
    env.failing.FailAt(fail_at);
    for (const auto& [name, step] : Scenario()) {
      try {
        step(env, tracking);
      } catch (const std::bad_alloc&) {
        ++result.bad_allocs;
        result.failed_step = name;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "step \"" << name << "\" threw " << typeid(e).name() << ": " << e.what();
      } catch (...) {
        ADD_FAILURE() << "step \"" << name << "\" threw something that is no std::exception";
      }
      CheckInvariants(env, tracking, name);
    }
    result.points = env.failing.points();
    result.allocations = env.failing.allocations();
    EXPECT_EQ(env.failing.failed(), fail_at != 0);

    CheckStillWorks(env);
    CheckInvariants(env, tracking, "after the scenario");

    if (fail_at % 2 == 0) {
      // Release everything cached; the upstream must then hold nothing.
      env.upstream_pool.Clear();
      env.resource_pool.Clear();
      env.self_failing_pool.Clear();
      env.reset_pool.Clear();
      env.resource.Trim();
      EXPECT_EQ(env.resource.GetStats().cached_blocks(), 0u);
      EXPECT_EQ(tracking.live_blocks(), 0u);
      EXPECT_EQ(tracking.live_bytes(), 0u);
    }
    // Otherwise destruction alone releases it.
  }
  EXPECT_EQ(tracking.live_blocks(), 0u);
  EXPECT_EQ(tracking.live_bytes(), 0u);
  EXPECT_TRUE(tracking.errors().empty()) << tracking.errors().front();
  EXPECT_EQ(tracking.allocations(), tracking.deallocations());
  return result;
}

class FaultInjectionTest : public ::testing::TestWithParam<Config> {};

TEST_P(FaultInjectionTest, EveryFaultPointFailsOnce) {
  const Config& config = GetParam();
  const RunResult clean = RunScenario(config, 0);
  EXPECT_EQ(clean.bad_allocs, 0) << "the run without failure threw in " << clean.failed_step;
  const uint64_t k = clean.points;
  // The scenario must exercise enough to be worth it: every step allocates upstream.
  ASSERT_GT(k, 100u);
  // Every run must make the same calls, or "the N-th fault point" would not name one call.
  ASSERT_EQ(RunScenario(config, 0).points, k) << "the scenario is not deterministic";

  uint64_t runs = 2;
  std::map<std::string, int> failures_by_step;
  for (uint64_t n = 1; n <= k; ++n) {
    SCOPED_TRACE("fault point " + std::to_string(n) + " of " + std::to_string(k));
    const RunResult r = RunScenario(config, n);
    ++runs;
    EXPECT_EQ(r.bad_allocs, 1) << "the failure at fault point " << n
                               << " did not reach the scenario exactly once";
    ++failures_by_step[r.failed_step];
    if (::testing::Test::HasFailure()) break;  // One failing N says it all.
  }
  std::cout << "[" << config.name << "] fault points K = " << k << " (" << clean.allocations
            << " upstream allocations, " << k - clean.allocations
            << " New failing by itself); runs = " << runs << "\n";
  for (const auto& [step, count] : failures_by_step) {
    std::cout << "  failures in step \"" << step << "\": " << count << "\n";
  }
  RecordProperty("fault_points", static_cast<int>(k));
  RecordProperty("runs", static_cast<int>(runs));
}

INSTANTIATE_TEST_SUITE_P(Configs, FaultInjectionTest,
                         ::testing::Values(Config{"debug_checks_off", false, true},
                                           Config{"debug_checks_on", true, true},
                                           Config{"rseq_off", false, false}),
                         [](const ::testing::TestParamInfo<Config>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace syncpool
