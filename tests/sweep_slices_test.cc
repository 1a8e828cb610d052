// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of sweeps in slices (Sweeper::Options::slice and pause, internal::SweepPacer): a sweep
// over tens of thousands of cached blocks lets the CPU go between slices, and at every point
// where it may pause it holds no cache lock and has reopened every cache it closed, so the
// thread beside it is served at once, by its own cache. Everything is driven by SweepNow()
// with an injected clock, which moves a fixed step each time it is read (so where the pauses
// fall does not depend on the machine's speed) and runs a probe: the pacer reads the clock
// exactly at the points where it may pause.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cpu_affinity.h"
#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::AllowedCpus;
using ::syncpool::testing::PinTo;
using ::syncpool::testing::TrackingResource;
using std::chrono::microseconds;
using TimePoint = std::chrono::steady_clock::time_point;

// Above 4 KiB: PoolResource keeps its blocks of up to 4 KiB in spans (src/spans.h), and a CPU's
// cache of one of those classes holds at most 64 KiB of them (1024 blocks of 64 bytes), so no
// such class caches the tens of thousands of blocks these sweeps must cut into slices. Blocks
// of the smallest class above 4 KiB are cached as the options say and go upstream one by one
// (upstream.live_blocks() counts them), as every class did before spans.
constexpr size_t kBlockBytes = 5120;
constexpr int kBlocks = 20000;  // Several remote takes (4096 blocks) and many release pieces.

// A clock that moves `step` each time it is read, and runs `probe` (when set) first.
struct SteppingClock {
  TimePoint now{};
  microseconds step{30};
  std::function<void()> probe;
  int reads = 0;

  TimePoint Read() {
    ++reads;
    if (probe) probe();
    now += step;
    return now;
  }
};

Sweeper::Options SlicedOptions(SteppingClock* clock, microseconds slice) {
  Sweeper::Options options = Sweeper::Options::Manual();
  options.clock = [clock] { return clock->Read(); };
  options.slice = slice;
  options.pause = microseconds(0);  // Yield: the tests need the pauses, not their length.
  return options;
}

Options ResourceOptions(Sweeper* sweeper) {
  Options options;
  options.sweeper = sweeper;
  options.retention = Retention::kVictim;  // Every sweep demotes, the next one releases.
  options.max_blocks_per_class = 2 * kBlocks;
  options.initial_blocks_per_class = 2 * kBlocks;
  options.per_cpu_class_bytes = 2 * kBlocks * kBlockBytes;
  options.per_cpu_bytes = 64 * kBlocks * kBlockBytes;
  options.refill_bytes = 0;
  return options;
}

// Caches `kBlocks` blocks on the calling thread's CPU.
void Fill(PoolResource& r) {
  std::vector<void*> held;
  held.reserve(kBlocks);
  for (int i = 0; i < kBlocks; ++i) held.push_back(r.allocate(kBlockBytes));
  for (void* p : held) r.deallocate(p, kBlockBytes);
}

// Gives `*kept` back and takes a block again on this CPU: true when that is the same block,
// served by the cache (a hit, no miss, no spill). Called where a sweep may pause, it shows
// that the cache is open and unlocked there: a lock still held would make this thread wait
// for itself; a cache left closed would send the deallocate and the allocate to their slow
// paths, which count a spill or a miss.
bool ServedByTheCache(PoolResource& r, void** kept) {
  const Stats before = r.GetStats();
  r.deallocate(*kept, kBlockBytes);
  void* again = r.allocate(kBlockBytes);
  const Stats after = r.GetStats();
  const bool same = again == *kept;
  *kept = again;
  return same && after.hits == before.hits + 1 && after.misses == before.misses &&
         after.spills == before.spills;
}

class SweepSlicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One CPU, so that the probe and the blocks it looks for share a cache.
    const std::vector<int> cpus = AllowedCpus();
    ASSERT_FALSE(cpus.empty());
    ASSERT_TRUE(PinTo(cpus[0]));
  }
};

TEST_F(SweepSlicesTest, SweepPausesWithEveryCacheOpenAndReleasesEverything) {
  SteppingClock clock;
  Sweeper sweeper(SlicedOptions(&clock, microseconds(100)));
  TrackingResource upstream;
  {
    PoolResource r(ResourceOptions(&sweeper), &upstream);
    Fill(r);
    const Stats filled = r.GetStats();
    ASSERT_EQ(filled.cached_blocks(), static_cast<uint64_t>(kBlocks));
    EXPECT_EQ(upstream.live_blocks(), static_cast<size_t>(kBlocks));

    // At every point where a sweep may pause, the cache serves this CPU at once.
    int probes = 0;
    int probe_failures = 0;
    void* kept = r.allocate(kBlockBytes);
    clock.probe = [&] {
      ++probes;
      if (!ServedByTheCache(r, &kept)) ++probe_failures;
    };
    sweeper.SweepNow();  // Demotes everything.
    sweeper.SweepNow();  // Releases the victims, kBlocks - 1 of them, in slices.
    clock.probe = nullptr;
    r.deallocate(kept, kBlockBytes);

    // 20,000 blocks released 256 at a time make at least 78 pieces, each followed by a look
    // at the clock; with a 30 us step and 100 us slices every fourth look pauses.
    EXPECT_GE(probes, kBlocks / 256);
    EXPECT_EQ(probe_failures, 0);
    EXPECT_GE(sweeper.pauses(), static_cast<uint64_t>(kBlocks / 256 / 5));
    const Stats swept = r.GetStats();
    EXPECT_EQ(swept.swept_blocks, static_cast<uint64_t>(kBlocks - 1));
    EXPECT_EQ(upstream.live_blocks(), swept.cached_blocks());
  }
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

// Wholly free spans go upstream in slices too: a sweep that gives back many of them looks at
// the clock after each one (a span's release can cost a system call upstream), and pauses.
TEST_F(SweepSlicesTest, FreeSpansGoUpstreamInSlices) {
  SteppingClock clock;
  Sweeper sweeper(SlicedOptions(&clock, microseconds(100)));
  TrackingResource upstream;
  {
    Options options;
    options.sweeper = &sweeper;
    PoolResource r(options, &upstream);
    constexpr int kSmall = 64000;  // 64-byte blocks: about 64 spans of 64 KiB.
    std::vector<void*> held;
    held.reserve(kSmall);
    for (int i = 0; i < kSmall; ++i) held.push_back(r.allocate(64));
    for (void* p : held) r.deallocate(p, 64);
    const size_t spans = upstream.live_blocks();
    ASSERT_GE(spans, 60u);
    sweeper.SweepNow();  // Every span was taken from in this epoch: they stay.
    ASSERT_EQ(upstream.live_blocks(), spans);
    const uint64_t before = sweeper.pauses();
    sweeper.SweepNow();  // Not taken from since: they go, but those holding a cached block.
    const size_t gone = spans - upstream.live_blocks();
    EXPECT_LE(upstream.live_blocks(), r.GetStats().cached_blocks());
    // With a 30 us step and 100 us slices every fourth look at the clock pauses; the cached
    // blocks (at most 1,024 of this class, released 256 at a time) make a few looks more.
    EXPECT_GE(sweeper.pauses() - before, gone / 5);
  }
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(SweepSlicesTest, ColdCacheIsDrainedInBoundedTakesBetweenPauses) {
  SteppingClock clock;
  Sweeper sweeper(SlicedOptions(&clock, microseconds(100)));
  TrackingResource upstream;
  PoolResource r(ResourceOptions(&sweeper), &upstream);
  Fill(r);
  // The probes' block, taken before the CPU goes cold: their own use of the cache must not
  // warm it before the sweep looks (a sweep reads the clock before it visits the cache), so
  // they use it only once the drain is under way.
  void* kept = r.allocate(kBlockBytes);
  sweeper.SweepNow();  // Demotes; the CPU is used no more, so the next sweep drains it cold.
  const Stats before = r.GetStats();
  constexpr uint64_t kCached = kBlocks - 1;
  ASSERT_EQ(before.cached_blocks(), kCached);
  int probes = 0;
  int probe_failures = 0;
  bool drain_begun = false;
  bool saw_part = false;  // A look between two pieces, part of the cache still there.
  clock.probe = [&] {
    // Between pieces the drain's progress is visible: blocks leave a piece at a time, and
    // at every point of a pause the cache serves this CPU at once.
    ++probes;
    const uint64_t cached = r.GetStats().cached_blocks();
    drain_begun = drain_begun || cached < kCached;
    saw_part = saw_part || (cached > 0 && cached < kCached);
    if (drain_begun && !ServedByTheCache(r, &kept)) ++probe_failures;
  };
  sweeper.SweepNow();
  clock.probe = nullptr;
  const Stats after = r.GetStats();
  EXPECT_EQ(probe_failures, 0);
  EXPECT_EQ(after.cached_blocks(), 0u);
  EXPECT_EQ(after.swept_blocks - before.swept_blocks, kCached);
  EXPECT_EQ(upstream.live_blocks(), 1u);  // `kept`.
  EXPECT_GE(probes, kBlocks / 256);
  EXPECT_TRUE(saw_part);
  EXPECT_GT(sweeper.pauses(), 0u);
  r.deallocate(kept, kBlockBytes);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(SweepSlicesTest, ZeroSliceNeverPauses) {
  SteppingClock clock;
  Sweeper sweeper(SlicedOptions(&clock, microseconds(0)));
  TrackingResource upstream;
  PoolResource r(ResourceOptions(&sweeper), &upstream);
  Fill(r);
  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(r.GetStats().cached_blocks(), 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_EQ(sweeper.pauses(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

// Pool<T> releases by destroying objects: the destructors run in slices too, and every object
// is destroyed once.
TEST_F(SweepSlicesTest, PoolObjectsAreDestroyedInSlices) {
  SteppingClock clock;
  Sweeper sweeper(SlicedOptions(&clock, microseconds(100)));
  static int live = 0;
  struct Counted {
    Counted() { ++live; }
    ~Counted() { --live; }
    char payload[48];
  };
  live = 0;
  Options options = ResourceOptions(&sweeper);
  Pool<Counted> pool([] { return std::make_unique<Counted>(); }, nullptr, options);
  {
    std::vector<Pool<Counted>::Handle> held;
    held.reserve(kBlocks);
    for (int i = 0; i < kBlocks; ++i) held.push_back(pool.Get());
  }
  ASSERT_EQ(live, kBlocks);
  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(live, 0);
  EXPECT_GT(sweeper.pauses(), 0u);
}

}  // namespace
}  // namespace syncpool
