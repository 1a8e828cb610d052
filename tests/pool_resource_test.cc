// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of PoolResource: reuse of freed blocks, alignment, requests that go upstream, errors,
// statistics, victim semantics under SweepNow(), Trim(), destruction, options, a miss that
// leaves another CPU's blocks alone, and the default resource. Resources run over a
// TrackingResource, which flags any block given back with a wrong size or alignment, and a
// sweeper without a thread.

#include "syncpool/pool_resource.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/internal/size_class.h"
#include "syncpool/pool.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"
#include "pattern.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::internal::ClassSize;
using ::syncpool::internal::SizeClassOf;
using ::syncpool::testing::IsAligned;
using ::syncpool::testing::ScopedFakeCpu;
using ::syncpool::testing::TrackingResource;

// The size of the block that serves `bytes` with the default alignment.
size_t BlockSize(size_t bytes) { return ClassSize(SizeClassOf((bytes + 15) & ~size_t{15})); }

struct Block {
  void* p;
  size_t bytes;
  size_t alignment;
};

// Every test leaves nothing upstream once its resources are destroyed (at the end of the
// test body), and TrackingResource saw no block given back with a wrong size or alignment.
template <typename Base>
class ResourceTest : public Base {
 protected:
  void TearDown() override {
    EXPECT_EQ(upstream_.live_bytes(), 0u);
    EXPECT_EQ(upstream_.live_blocks(), 0u);
    EXPECT_TRUE(upstream_.errors().empty()) << upstream_.errors().front();
  }

  Sweeper sweeper_{Sweeper::Options::Manual()};
  TrackingResource upstream_;
};

// Runs each test with debug checks off and on: what is tested must not depend on them.
class PoolResourceTest : public ResourceTest<::testing::TestWithParam<bool>> {
 protected:
  // One block per miss (refill_bytes = 0): these tests count misses and upstream calls
  // block by block. Refills have tests of their own (PoolResourceTest.*Refill*).
  Options MakeOptions() {
    return Options{.sweeper = &sweeper_, .refill_bytes = 0, .debug_checks = GetParam()};
  }
};

using PoolResourceApiTest = ResourceTest<::testing::Test>;

INSTANTIATE_TEST_SUITE_P(DebugChecks, PoolResourceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "On" : "Off");
                         });

TEST_P(PoolResourceTest, FreedBlockIsReusedOnTheSameCpu) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  void* p = r.allocate(100, 8);
  // Blocks of up to 4 KiB come from a span: one upstream allocation, of the span's bytes.
  EXPECT_EQ(upstream_.allocations(), 1u);
  EXPECT_GE(r.GetStats().span_bytes, 64u * 1024);
  EXPECT_EQ(upstream_.live_bytes(), r.GetStats().span_bytes);
  r.deallocate(p, 100, 8);
  EXPECT_EQ(r.allocate(100, 8), p);
  r.deallocate(p, 100, 8);
  EXPECT_EQ(r.allocate(97, 1), p);  // Any size of the class is served by the same block.
  r.deallocate(p, 97, 1);
  EXPECT_EQ(upstream_.allocations(), 1u);
  EXPECT_EQ(upstream_.deallocations(), 0u);
}

TEST_P(PoolResourceTest, AMissRefillsABatchThatTheNextAllocationsOfItsClassHit) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.refill_bytes = 4096;  // 64 blocks of 64 bytes (the most), 4 of 1 KiB, 1 of 8 KiB.
  PoolResource r(options, &upstream_);
  std::vector<void*> blocks;
  for (int i = 0; i < 128; ++i) blocks.push_back(r.allocate(64));
  Stats s = r.GetStats();
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.refilled, 126u);
  EXPECT_EQ(s.hits, 126u);
  EXPECT_EQ(upstream_.allocations(), 1u);  // One span holds all 128 blocks.
  EXPECT_EQ(s.cached_blocks(), 0u);
  // Handed out in address order (the span's lowest free blocks first), none twice.
  EXPECT_TRUE(std::is_sorted(blocks.begin(), blocks.end()));
  std::vector<void*> sorted = blocks;
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (void* p : blocks) r.deallocate(p, 64);

  void* kib = r.allocate(1024);
  s = r.GetStats();
  EXPECT_EQ(s.refilled, 126u + 3u);
  EXPECT_EQ(s.primary_blocks, 128u + 3u);
  void* big = r.allocate(8192);
  EXPECT_EQ(r.GetStats().refilled, 129u);
  r.deallocate(kib, 1024);
  r.deallocate(big, 8192);
  s = r.GetStats();
  // Upstream: a span of each of the two span classes, and the one 8 KiB block.
  EXPECT_EQ(upstream_.live_blocks(), 3u);
  EXPECT_EQ(upstream_.live_bytes(), s.span_bytes + BlockSize(8192));
  EXPECT_EQ(s.span_block_bytes - s.span_free_bytes, 128 * 64u + 4 * 1024u);  // All cached.
}

TEST_P(PoolResourceTest, ARefillStopsWhereTheUpstreamFailsAndTheRequestIsServed) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  // Blocks above 4 KiB come from upstream one by one: 8 of 8 KiB per refill.
  options.refill_bytes = 8 * 8192;
  PoolResource r(options, &upstream_);
  upstream_.FailAfter(5);  // The miss's block and 4 more; the 6th upstream call fails.
  void* p = r.allocate(8192);
  Stats s = r.GetStats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.refilled, 4u);
  EXPECT_EQ(s.primary_blocks, 4u);
  EXPECT_EQ(upstream_.live_blocks(), 5u);
  r.deallocate(p, 8192);
  // A miss whose own block cannot be had throws and changes nothing: above 4 KiB, and for a
  // class whose span cannot be had.
  upstream_.FailAfter(0);
  EXPECT_THROW((void)r.allocate(6000), std::bad_alloc);
  upstream_.FailAfter(0);
  EXPECT_THROW((void)r.allocate(1024), std::bad_alloc);
  s = r.GetStats();
  EXPECT_EQ(s.refilled, 4u);
  EXPECT_EQ(s.cached_blocks(), 5u);
  EXPECT_EQ(s.span_bytes, 0u);
  EXPECT_EQ(upstream_.live_blocks(), 5u);
}

TEST_P(PoolResourceTest, ZeroBytesGiveDistinctAlignedDeallocatableBlocks) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  for (const size_t align : {1, 16, 32, 64}) {
    std::vector<void*> blocks;
    for (int i = 0; i < 16; ++i) {
      void* p = r.allocate(0, align);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(IsAligned(p, align)) << p << " for alignment " << align;
      EXPECT_EQ(std::count(blocks.begin(), blocks.end(), p), 0) << "handed out twice";
      blocks.push_back(p);
    }
    for (void* p : blocks) r.deallocate(p, 0, align);
  }
  EXPECT_GT(r.GetStats().primary_blocks, 0u);
}

TEST_P(PoolResourceTest, AlignmentThatIsNotAPowerOfTwoThrows) {
  PoolResource r(MakeOptions(), &upstream_);
  for (const size_t align : {0, 3, 6, 12, 48, 96, 192, 1000}) {
    EXPECT_THROW((void)r.allocate(8, align), std::invalid_argument) << align;
    EXPECT_THROW((void)r.allocate(r.max_block_size() + 1, align), std::invalid_argument)
        << align;
  }
  const Stats s = r.GetStats();
  EXPECT_EQ(s.hits + s.misses + s.direct, 0u);
  EXPECT_EQ(upstream_.allocations(), 0u);
}

TEST_P(PoolResourceTest, PooledAlignmentsAreHonoured) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  const size_t sizes[] = {1,    7,    16,   24,    48, 100, 129, 200, 1000, 3000, 4104,
                          65535, r.max_block_size()};
  // Twice: the second round reuses the first round's blocks for other alignments.
  for (int round = 0; round < 2; ++round) {
    std::vector<Block> live;
    for (size_t align = 1; align <= kMaxPooledAlignment; align *= 2) {
      for (const size_t size : sizes) {
        void* p = r.allocate(size, align);
        EXPECT_TRUE(IsAligned(p, align)) << size << " aligned to " << align;
        std::memset(p, static_cast<int>(live.size() & 0xff), size);
        live.push_back({p, size, align});
      }
    }
    for (size_t i = 0; i < live.size(); ++i) {
      const auto* bytes = static_cast<const unsigned char*>(live[i].p);
      const bool intact = std::all_of(bytes, bytes + live[i].bytes,
                                      [i](unsigned char b) { return b == (i & 0xff); });
      EXPECT_TRUE(intact) << "block " << i << " overlaps another";
    }
    for (const Block& b : live) r.deallocate(b.p, b.bytes, b.alignment);
  }
  EXPECT_EQ(r.GetStats().direct, 0u);
  EXPECT_GT(r.GetStats().hits, 0u);
}

TEST_P(PoolResourceTest, LargeAndOverAlignedRequestsGoUpstream) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.max_block_size = 4096;
  PoolResource r(options, &upstream_);
  EXPECT_EQ(r.max_block_size(), 4096u);
  r.deallocate(r.allocate(4096), 4096);  // The largest pooled size.
  EXPECT_EQ(r.GetStats().direct, 0u);
  EXPECT_EQ(r.GetStats().primary_blocks, 1u);
  const size_t before = upstream_.live_bytes();

  const Block blocks[] = {{r.allocate(4097, 16), 4097, 16},
                          {r.allocate(100, 128), 100, 128},
                          {r.allocate(10, 4096), 10, 4096}};
  for (const Block& b : blocks) EXPECT_TRUE(IsAligned(b.p, b.alignment)) << b.alignment;
  EXPECT_EQ(upstream_.live_bytes(), before + 4097 + 100 + 10);
  Stats s = r.GetStats();
  EXPECT_EQ(s.direct, 3u);
  EXPECT_EQ(s.hits + s.misses, 1u);

  for (const Block& b : blocks) r.deallocate(b.p, b.bytes, b.alignment);
  EXPECT_EQ(upstream_.live_bytes(), before);  // Given back at once, never cached.
  EXPECT_EQ(upstream_.deallocations(), 3u);
  EXPECT_EQ(r.GetStats().cached_blocks(), 1u);
}

TEST_P(PoolResourceTest, UpstreamFailurePropagatesAndChangesNothing) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  void* kept = r.allocate(8192);
  r.deallocate(r.allocate(512), 512);  // One cached block of 512 (from a span).
  const Stats before = r.GetStats();
  const size_t live_before = upstream_.live_bytes();

  upstream_.FailAfter(0);
  void* cached = r.allocate(512);  // A cached block needs no upstream call.
  EXPECT_THROW((void)r.allocate(8192), std::bad_alloc);  // A block of its own upstream.
  upstream_.FailAfter(0);
  EXPECT_THROW((void)r.allocate(64), std::bad_alloc);  // A class without a span yet.
  upstream_.FailAfter(0);
  EXPECT_THROW((void)r.allocate(r.max_block_size() + 1), std::bad_alloc);
  upstream_.FailAfter(0);
  EXPECT_THROW((void)r.allocate(64, 256), std::bad_alloc);

  const Stats after = r.GetStats();
  EXPECT_EQ(after.hits, before.hits + 1);
  // The failed pooled requests found the caches empty: at most those misses are counted.
  EXPECT_LE(after.misses, before.misses + 2);
  EXPECT_EQ(after.direct, before.direct);
  EXPECT_EQ(after.cached_blocks(), 0u);
  EXPECT_EQ(after.span_bytes, before.span_bytes);
  EXPECT_EQ(upstream_.live_bytes(), live_before);

  void* fresh = r.allocate(8192);  // Still fully usable.
  EXPECT_NE(fresh, kept);
  for (void* p : {fresh, kept}) r.deallocate(p, 8192);
  r.deallocate(cached, 512);
  EXPECT_EQ(r.GetStats().primary_blocks, 3u);
}

TEST_P(PoolResourceTest, StatsFollowHitsMissesAndGenerations) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  const uint64_t block = BlockSize(100);
  void* a = r.allocate(100);
  void* b = r.allocate(100);
  EXPECT_EQ(r.GetStats().misses, 2u);
  r.deallocate(a, 100);
  r.deallocate(b, 100);
  Stats s = r.GetStats();
  EXPECT_EQ(s.primary_blocks, 2u);
  EXPECT_EQ(s.primary_bytes, 2 * block);
  a = r.allocate(100);
  EXPECT_EQ(r.GetStats().hits, 1u);

  sweeper_.SweepNow();
  s = r.GetStats();
  EXPECT_EQ(s.epochs, 1u);
  EXPECT_EQ(s.primary_blocks, 0u);
  EXPECT_EQ(s.victim_blocks, 1u);
  EXPECT_EQ(s.victim_bytes, block);
  b = r.allocate(100);  // From this CPU's victim generation: a hit.
  s = r.GetStats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.cached_blocks(), 0u);

  r.deallocate(a, 100);
  r.deallocate(b, 100);
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  s = r.GetStats();
  EXPECT_EQ(s.epochs, 3u);
  EXPECT_EQ(s.swept_blocks, 2u);
  EXPECT_EQ(s.swept_bytes, 2 * block);
  EXPECT_EQ(s.cached_bytes(), 0u);
  EXPECT_EQ(s.spills, 0u);
}

// A freed block survives one sweep and is released by the second; allocation takes the
// primary generation before the victim; a block in steady use survives any number of sweeps.
TEST_P(PoolResourceTest, VictimGenerationSemantics) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  r.deallocate(r.allocate(200), 200);
  sweeper_.SweepNow();
  EXPECT_EQ(upstream_.live_blocks(), 1u);
  EXPECT_EQ(r.GetStats().victim_blocks, 1u);
  sweeper_.SweepNow();
  EXPECT_EQ(upstream_.live_blocks(), 0u);
  EXPECT_EQ(r.GetStats().swept_blocks, 1u);

  void* old_block = r.allocate(64);
  void* new_block = r.allocate(64);
  r.deallocate(old_block, 64);
  sweeper_.SweepNow();  // old_block is now in the victim generation.
  r.deallocate(new_block, 64);
  EXPECT_EQ(r.allocate(64), new_block);
  EXPECT_EQ(r.allocate(64), old_block);

  for (int i = 0; i < 5; ++i) {
    r.deallocate(old_block, 64);
    sweeper_.SweepNow();
    EXPECT_EQ(r.allocate(64), old_block);
  }
  for (void* p : {old_block, new_block}) r.deallocate(p, 64);
  EXPECT_EQ(r.GetStats().misses, 3u);  // Every later allocation was a hit.
  EXPECT_EQ(upstream_.allocations(), 2u);  // A span of each class (200 and 64 bytes).
}

TEST_P(PoolResourceTest, TrimReturnsEveryCachedBlock) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  void* in_use = r.allocate(300);
  std::vector<Block> blocks;
  for (size_t size = 8; size <= 8192; size *= 2) blocks.push_back({r.allocate(size), size, 16});
  for (size_t i = 0; i < blocks.size(); i += 2) r.deallocate(blocks[i].p, blocks[i].bytes);
  sweeper_.SweepNow();  // Some victims, some primaries.
  for (size_t i = 1; i < blocks.size(); i += 2) r.deallocate(blocks[i].p, blocks[i].bytes);
  ASSERT_GT(r.GetStats().victim_blocks, 0u);
  ASSERT_GT(r.GetStats().primary_blocks, 0u);

  r.Trim();
  EXPECT_EQ(r.GetStats().cached_bytes(), 0u);
  EXPECT_EQ(upstream_.live_blocks(), 1u);  // Only the block in use, which is unaffected.
  r.deallocate(in_use, 300);
  EXPECT_EQ(r.allocate(300), in_use);
  r.deallocate(in_use, 300);
}

TEST_P(PoolResourceTest, DestructionReturnsEveryCachedBlock) {
  Options options = MakeOptions();
  options.mode = CacheMode::kPerCpu;  // The fake CPU ids name the caches.
  PoolResource r(options, &upstream_);
  for (int cpu = 0; cpu < ScopedFakeCpu::NumCpus(); ++cpu) {
    ScopedFakeCpu on(cpu);
    std::vector<Block> blocks;
    for (size_t size = 0; size <= 70000; size = size * 3 + 1) {
      blocks.push_back({r.allocate(size), size, 16});
    }
    for (const Block& b : blocks) r.deallocate(b.p, b.bytes);
    sweeper_.SweepNow();
    r.deallocate(r.allocate(40), 40);
  }
  EXPECT_GT(r.GetStats().victim_blocks, 0u);
  EXPECT_GT(r.GetStats().primary_blocks, 0u);
}

TEST_P(PoolResourceTest, FullCacheSpillsUpstream) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.max_blocks_per_class = 4;
  options.per_cpu_class_bytes = 1024;
  PoolResource r(options, &upstream_);
  // 64 bytes: min(4, 1024 / 64) = 4 blocks per CPU and no TransferStack (a span class):
  // 4 kept of 14, 10 back in their span.
  // 8192 bytes: never fewer than 2 per CPU, and 4 in the TransferStack: 6 kept of 7, one
  // spilled upstream.
  std::vector<Block> blocks;
  for (int i = 0; i < 14; ++i) blocks.push_back({r.allocate(64), 64, 16});
  for (int i = 0; i < 7; ++i) blocks.push_back({r.allocate(8192), 8192, 16});
  for (const Block& b : blocks) r.deallocate(b.p, b.bytes);
  const Stats s = r.GetStats();
  EXPECT_EQ(s.primary_blocks, 10u);
  EXPECT_EQ(s.spills, 11u);
  EXPECT_EQ(s.span_block_bytes - s.span_free_bytes, 4 * 64u);
  EXPECT_EQ(upstream_.live_blocks(), 1u + 6u);  // The span and the 8 KiB blocks kept.
}

// The spans: a span goes back upstream only when every one of its blocks is free, however
// many epochs pass while one of them is in use.
TEST_P(PoolResourceTest, ASpanGoesUpstreamOnlyWhenAllOfItsBlocksAreFree) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  void* a = r.allocate(64);
  void* b = r.allocate(64);
  ASSERT_EQ(upstream_.live_blocks(), 1u);  // Both from one span.
  r.deallocate(a, 64);
  r.Trim();  // a goes back to its span; b keeps the span.
  for (int i = 0; i < 3; ++i) sweeper_.SweepNow();
  Stats s = r.GetStats();
  EXPECT_EQ(upstream_.live_blocks(), 1u);
  EXPECT_EQ(s.span_block_bytes - s.span_free_bytes, 64u);  // b, in use.
  EXPECT_EQ(s.span_released_bytes, 0u);
  r.deallocate(b, 64);
  r.Trim();
  s = r.GetStats();
  EXPECT_EQ(upstream_.live_blocks(), 0u);
  EXPECT_EQ(s.span_bytes, 0u);
  EXPECT_GE(s.span_released_bytes, 64u * 1024);
}

// A wholly free span that blocks were taken from since the previous epoch stays for one more
// (a structure freed and rebuilt between two epochs keeps its memory); one that stays unused
// goes at the next epoch. A pressure sweep or a Trim() gives it back at once.
TEST_P(PoolResourceTest, AFreeSpanUsedSinceThePreviousEpochStaysForOneMore) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.max_blocks_per_class = 4;  // The cache keeps at most 4 blocks: the rest go to spans.
  options.per_cpu_class_bytes = 256;
  PoolResource r(options, &upstream_);
  auto round = [&r] {
    std::vector<void*> blocks;
    for (int i = 0; i < 3000; ++i) blocks.push_back(r.allocate(64));  // Three spans.
    for (void* p : blocks) r.deallocate(p, 64);
  };
  round();
  const Stats before = r.GetStats();
  ASSERT_EQ(before.span_bytes, upstream_.live_bytes());
  ASSERT_GE(upstream_.live_blocks(), 3u);
  sweeper_.SweepNow();  // Every span was taken from in this epoch: all stay.
  EXPECT_EQ(r.GetStats().span_bytes, before.span_bytes);
  EXPECT_EQ(r.GetStats().span_released_bytes, 0u);
  sweeper_.SweepNow();  // None was taken from since: the wholly free ones go.
  Stats s = r.GetStats();
  EXPECT_LT(s.span_bytes, before.span_bytes);
  EXPECT_EQ(s.span_released_bytes, before.span_bytes - s.span_bytes);
  // Every span left holds a cached block (a free span without one went).
  EXPECT_LE(upstream_.live_blocks(), s.cached_blocks());

  round();
  sweeper_.SweepNow(/*pressure=*/true);  // Everything cached goes, then every free span.
  s = r.GetStats();
  EXPECT_EQ(s.cached_blocks(), 0u);
  EXPECT_EQ(s.span_bytes, 0u);
  EXPECT_EQ(upstream_.live_blocks(), 0u);

  round();
  r.Trim();
  EXPECT_EQ(r.GetStats().span_bytes, 0u);
  EXPECT_EQ(upstream_.live_blocks(), 0u);
}

// The wholly free spans an epoch keeps (used since the previous one) go at the next epoch
// unless a block is taken from them meanwhile: a span used again stays again, and every other
// one goes, whatever list it waited on.
TEST_P(PoolResourceTest, AKeptFreeSpanUsedAgainStaysAgainAndTheOthersGo) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.max_blocks_per_class = 4;  // The cache keeps at most 4 blocks: the rest go to spans.
  options.per_cpu_class_bytes = 256;
  PoolResource r(options, &upstream_);
  // Spans of 64-byte blocks are 64 KiB, aligned to their size.
  auto span_of = [](void* p) {
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{0xffff});
  };
  std::vector<void*> blocks;
  for (int i = 0; i < 3000; ++i) blocks.push_back(r.allocate(64));
  std::set<void*> spans;
  for (void* p : blocks) spans.insert(span_of(p));
  ASSERT_GE(spans.size(), 3u);
  for (void* p : blocks) r.deallocate(p, 64);
  sweeper_.SweepNow();  // Every span was taken from in this epoch: all stay.
  for (void* s : spans) ASSERT_TRUE(upstream_.IsLive(s));
  // The cached blocks first, then blocks taken from a span that waited as a kept one.
  const size_t cached = r.GetStats().cached_blocks();
  std::vector<void*> again;
  for (int i = 0; i < 100; ++i) again.push_back(r.allocate(64));
  std::set<void*> taken_from;
  for (size_t i = cached; i < again.size(); ++i) taken_from.insert(span_of(again[i]));
  for (void* p : again) r.deallocate(p, 64);
  ASSERT_LT(taken_from.size(), spans.size());
  sweeper_.SweepNow();
  size_t others_live = 0;
  for (void* s : spans) {
    if (taken_from.count(s) != 0) {
      EXPECT_TRUE(upstream_.IsLive(s)) << s;
    } else if (upstream_.IsLive(s)) {
      ++others_live;
    }
  }
  // Every other span went, but those holding a cached block.
  EXPECT_LE(others_live, r.GetStats().cached_blocks());
  EXPECT_GT(r.GetStats().span_released_bytes, 0u);
  sweeper_.SweepNow();  // Not used since: the rest go, but a span holding a cached block.
  EXPECT_LE(upstream_.live_blocks(), r.GetStats().cached_blocks());
}

// Blocks freed in a scattered order come back in address order once they are in the spans:
// past what the (small) cache holds, each span hands out its lowest free blocks first.
TEST_P(PoolResourceTest, BlocksFreedInAnyOrderAreHandedOutInAddressOrder) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.max_blocks_per_class = 4;
  options.per_cpu_class_bytes = 256;
  PoolResource r(options, &upstream_);
  constexpr int kBlocks = 3000;  // Three spans of 64-byte blocks.
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(r.allocate(64));
  // Freed in a fixed scattered order (a stride coprime to the count).
  for (int i = 0; i < kBlocks; ++i) r.deallocate(blocks[(static_cast<size_t>(i) * 1237) % kBlocks], 64);
  const uint32_t cached = static_cast<uint32_t>(r.GetStats().cached_blocks());
  ASSERT_LE(cached, 4u);
  std::vector<void*> again;
  for (int i = 0; i < kBlocks; ++i) again.push_back(r.allocate(64));
  auto span_of = [](void* p) { return reinterpret_cast<uintptr_t>(p) >> 16; };
  int ascending = 0;
  for (size_t i = cached + 1; i < again.size(); ++i) {
    if (span_of(again[i]) != span_of(again[i - 1])) continue;
    EXPECT_LT(again[i - 1], again[i]) << "at " << i;
    ++ascending;
  }
  EXPECT_GT(ascending, kBlocks / 2);
  std::vector<void*> sorted = again;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (void* p : again) r.deallocate(p, 64);
}

// Destroying the resource gives every span back upstream, with the blocks still in use (the
// fixture checks that the upstream holds nothing after the test).
TEST_P(PoolResourceTest, DestructionReturnsSpansWithBlocksStillInUse) {
  ScopedFakeCpu cpu(0);
  {
    PoolResource r(MakeOptions(), &upstream_);
    for (int i = 0; i < 2000; ++i) static_cast<void>(r.allocate(48));
    static_cast<void>(r.allocate(4096));
    EXPECT_GE(upstream_.live_blocks(), 2u);
  }
  EXPECT_EQ(upstream_.live_bytes(), 0u);
}

// Every block still allocated goes back at destruction: those of the spans, of the larger
// classes and those passed straight upstream (the fixture checks that the upstream holds
// nothing after the test). With debug checks on, one line names the pool and what was left.
TEST_P(PoolResourceTest, DestructionReturnsEveryBlockStillAllocated) {
  ScopedFakeCpu cpu(0);
  Options options = MakeOptions();
  options.name = "leaky";
  ::testing::internal::CaptureStderr();
  {
    PoolResource r(options, &upstream_);
    for (int i = 0; i < 1000; ++i) static_cast<void>(r.allocate(i % 3 == 0 ? 64 : i % 3 == 1 ? 5000 : 300 * 1024));
    r.deallocate(r.allocate(6000), 6000);  // Cached, not outstanding.
    EXPECT_GE(upstream_.live_blocks(), 667u);
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(upstream_.live_bytes(), 0u);
  if (GetParam()) {
    const size_t bytes = 334 * 64 + 333 * 5000 + 333 * 300 * 1024;
    EXPECT_NE(err.find("syncpool: PoolResource \"leaky\" destroyed with 1000 blocks (" +
                       std::to_string(bytes) + " bytes) still allocated from it"),
              std::string::npos)
        << err;
  } else {
    EXPECT_EQ(err, "");
  }
}

// release() gives back everything, blocks in use included, and the resource stays usable.
TEST_P(PoolResourceTest, ReleaseReturnsEverythingAndTheResourceStaysUsable) {
  ScopedFakeCpu cpu(0);
  PoolResource r(MakeOptions(), &upstream_);
  for (size_t bytes : {size_t{48}, size_t{4096}, size_t{8000}, size_t{1} << 20}) {
    static_cast<void>(r.allocate(bytes));
    r.deallocate(r.allocate(bytes), bytes);
  }
  ASSERT_GT(upstream_.live_bytes(), 0u);
  // What is held from upstream, and what of it is in use (one block of each size).
  Stats held = r.GetStats();
  EXPECT_EQ(held.upstream_bytes, upstream_.live_bytes());
  EXPECT_EQ(held.in_use_bytes, BlockSize(48) + BlockSize(4096) + BlockSize(8000) + (size_t{1} << 20));
  r.release();
  EXPECT_EQ(upstream_.live_bytes(), 0u);
  EXPECT_EQ(upstream_.live_blocks(), 0u);
  const Stats s = r.GetStats();
  EXPECT_EQ(s.cached_blocks(), 0u);
  EXPECT_EQ(s.span_bytes, 0u);
  std::vector<std::pair<void*, size_t>> again;
  for (size_t bytes : {size_t{48}, size_t{4096}, size_t{8000}, size_t{1} << 20}) {
    again.emplace_back(r.allocate(bytes), bytes);
  }
  for (auto [p, bytes] : again) r.deallocate(p, bytes);
  r.release();
  EXPECT_EQ(upstream_.live_bytes(), 0u);
}

TEST_P(PoolResourceTest, AMissNeverTakesAnotherCpusBlocks) {
  if (ScopedFakeCpu::NumCpus() < 2) GTEST_SKIP() << "needs two CPUs";
  Options options = MakeOptions();
  options.mode = CacheMode::kPerCpu;  // The fake CPU ids name the caches.
  PoolResource r(options, &upstream_);
  auto on = [](int cpu, auto f) {
    ScopedFakeCpu fake(cpu);
    return f();
  };
  void* p = on(0, [&] { return r.allocate(128); });
  on(0, [&] { r.deallocate(p, 128); });
  void* q = on(1, [&] { return r.allocate(128); });  // CPU 0's primary is its own: a miss.
  EXPECT_NE(q, p);
  EXPECT_EQ(r.GetStats().misses, 2u);
  sweeper_.SweepNow();  // p is now a victim on CPU 0: blocks unused for an epoch.
  void* q2 = on(1, [&] { return r.allocate(128); });  // Still a miss: CPU 0 keeps p.
  EXPECT_NE(q2, p);
  EXPECT_EQ(r.GetStats().misses, 3u);
  EXPECT_EQ(r.GetStats().hits, 0u);
  EXPECT_EQ(on(0, [&] { return r.allocate(128); }), p);  // CPU 0 finds its victim.
  EXPECT_EQ(r.GetStats().hits, 1u);
  on(1, [&] { r.deallocate(q2, 128); });

  on(1, [&] { r.deallocate(p, 128); });
  on(0, [&] { r.deallocate(q, 128); });
  EXPECT_EQ(on(1, [&] { return r.allocate(128); }), p);  // Each CPU uses its own block.
  EXPECT_EQ(on(0, [&] { return r.allocate(128); }), q);
  on(1, [&] {
    r.deallocate(p, 128);
    r.deallocate(q, 128);
  });
}

TEST_F(PoolResourceApiTest, InvalidOptionsThrow) {
  Options options{.sweeper = &sweeper_, .debug_checks = false};
  options.max_block_size = internal::kMaxClassSize + 1;
  EXPECT_THROW(PoolResource(options, &upstream_), std::invalid_argument);
  options.max_block_size = internal::kMaxClassSize;
  options.max_blocks_per_class = 0;
  EXPECT_THROW(PoolResource(options, &upstream_), std::invalid_argument);
  options.max_blocks_per_class = 1;  // The default starting point is lowered to it.
  PoolResource r(options, &upstream_);  // 1 MiB is the largest valid block size.
  r.deallocate(r.allocate(internal::kMaxClassSize), internal::kMaxClassSize);
  EXPECT_EQ(r.GetStats().direct, 0u);
}

// Each invalid value throws std::invalid_argument naming the field, the value and what is
// accepted; a field a kind of pool ignores is accepted by it.
TEST_F(PoolResourceApiTest, EveryInvalidValueIsNamed) {
  auto message = [this](const Options& options) -> std::string {
    try {
      PoolResource r(options, &upstream_);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(nothing thrown)";
  };
  const Options valid{.sweeper = &sweeper_};
  Options o = valid;
  o.retention = static_cast<Retention>(7);
  EXPECT_EQ(message(o),
            "syncpool::PoolResource: Options::retention is Retention(7); expected "
            "Retention::kWorkingSet or Retention::kVictim");
  o = valid;
  o.mode = static_cast<CacheMode>(9);
  EXPECT_EQ(message(o),
            "syncpool::PoolResource: Options::mode is CacheMode(9); expected CacheMode::kAuto, "
            "CacheMode::kPerCpu or CacheMode::kPerThread");
  o = valid;
  o.max_blocks_per_class = 64;
  o.initial_blocks_per_class = 100;
  EXPECT_EQ(message(o),
            "syncpool::PoolResource: Options::initial_blocks_per_class is 100; expected at most "
            "Options::max_blocks_per_class (64)");
  o = valid;
  o.max_cached_bytes = 8;
  EXPECT_EQ(message(o),
            "syncpool::PoolResource: Options::max_cached_bytes is 8; expected 0 (no budget) or "
            "at least 16 (one block of the smallest class)");
  o = valid;
  o.max_block_size = 2 << 20;
  EXPECT_EQ(message(o),
            "syncpool::PoolResource: Options::max_block_size is 2097152; expected bytes, from 0 "
            "to 1 MiB");
  // A Pool ignores max_block_size (and the other resource-only fields): accepted.
  EXPECT_NO_THROW(Pool<int>(nullptr, nullptr, o));
  o.max_blocks_per_class = 0;
  EXPECT_THROW(Pool<int>(nullptr, nullptr, o), std::invalid_argument);

  auto sweeper_message = [](Sweeper::Options options) -> std::string {
    try {
      Sweeper s(options);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(nothing thrown)";
  };
  EXPECT_EQ(sweeper_message(Sweeper::Options::Manual(std::chrono::milliseconds(0))),
            "syncpool::Sweeper: Sweeper::Options::interval is 0 ms; expected 1 to 86400000 ms");
  EXPECT_EQ(sweeper_message(Sweeper::Options::Every(std::chrono::milliseconds(-5))),
            "syncpool::Sweeper: Sweeper::Options::interval is -5 ms; expected 1 to 86400000 ms");
  Sweeper::Options negative_pause = Sweeper::Options::Manual();
  negative_pause.pause = std::chrono::microseconds(-1);
  EXPECT_EQ(sweeper_message(negative_pause),
            "syncpool::Sweeper: Sweeper::Options::pause is -1 us; expected 0 (a yield) or more");
  EXPECT_EQ(sweeper_message(Sweeper::Options::Manual(std::chrono::milliseconds(1))),
            "(nothing thrown)");
}

TEST_F(PoolResourceApiTest, IsEqualOnlyToItself) {
  PoolResource a(Options{.sweeper = &sweeper_, .debug_checks = false}, &upstream_);
  PoolResource b(Options{.sweeper = &sweeper_, .debug_checks = false}, &upstream_);
  EXPECT_TRUE(a.is_equal(a));
  EXPECT_FALSE(a.is_equal(b));
  EXPECT_FALSE(a.is_equal(upstream_));
  EXPECT_FALSE(a.is_equal(*std::pmr::new_delete_resource()));
  EXPECT_TRUE(a == a);
  EXPECT_TRUE(a != b);
  EXPECT_NE(std::pmr::polymorphic_allocator<int>(&a), std::pmr::polymorphic_allocator<int>(&b));
}

TEST_F(PoolResourceApiTest, PmrContainersWork) {
  PoolResource r(Options{.sweeper = &sweeper_, .debug_checks = true}, &upstream_);
  {
    std::pmr::vector<std::pmr::string> v(&r);
    for (int i = 0; i < 200; ++i) v.emplace_back(100 + i % 50, static_cast<char>('a' + i % 26));
    for (int i = 0; i < 200; ++i) {
      ASSERT_EQ(std::string_view(v[i]), std::string(100 + i % 50, static_cast<char>('a' + i % 26)))
          << i;
    }
    EXPECT_EQ(v.back().get_allocator().resource(), &r);
    const Stats s = r.GetStats();
    EXPECT_GE(s.hits + s.misses, 200u);
  }
  EXPECT_GT(r.GetStats().cached_blocks(), 0u);
}

TEST_F(PoolResourceApiTest, DefaultAndScopedDefaultResource) {
  PoolResource& d = PoolResource::Default();
  EXPECT_EQ(&PoolResource::Default(), &d);
  EXPECT_EQ(d.upstream(), DefaultUpstream());
  EXPECT_EQ(d.max_block_size(), Options{}.max_block_size);
  d.deallocate(d.allocate(1000, 64), 1000, 64);

  std::pmr::memory_resource* const original = std::pmr::get_default_resource();
  PoolResource mine(Options{.sweeper = &sweeper_, .debug_checks = false}, &upstream_);
  {
    ScopedDefaultResource use_default;
    EXPECT_EQ(std::pmr::get_default_resource(), &PoolResource::Default());
    {
      ScopedDefaultResource use_mine(&mine);
      EXPECT_EQ(std::pmr::get_default_resource(), &mine);
      std::pmr::vector<int> v(1000, 7);
      EXPECT_EQ(v.get_allocator().resource(), &mine);
      EXPECT_EQ(mine.GetStats().misses, 1u);
      EXPECT_EQ(upstream_.allocations(), 1u);
    }
    EXPECT_EQ(std::pmr::get_default_resource(), &PoolResource::Default());
  }
  EXPECT_EQ(std::pmr::get_default_resource(), original);
}

}  // namespace
}  // namespace syncpool

namespace syncpool {
namespace {

// A largest block size that is not a multiple of the alignment: the rounded request lands in a
// class above max_block_size, which the resource must still have. Both per-CPU paths.
class OddMaxBlockSizeTest : public ResourceTest<::testing::TestWithParam<bool>> {};

INSTANTIATE_TEST_SUITE_P(BothPaths, OddMaxBlockSizeTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Rseq" : "Locked");
                         });

TEST_P(OddMaxBlockSizeTest, EveryAdmittedRequestHasAClass) {
  for (const size_t max : {size_t{0}, size_t{16}, size_t{48}, size_t{100}, size_t{150},
                           size_t{200}, size_t{224}, size_t{1000}}) {
    Options options{.sweeper = &sweeper_, .debug_checks = false};
    options.max_block_size = max;
    options.allow_rseq = GetParam();
    PoolResource r(options, &upstream_);
    std::vector<Block> blocks;
    for (size_t alignment = 1; alignment <= kMaxPooledAlignment; alignment *= 2) {
      for (const size_t bytes : {size_t{0}, max / 2, max}) {
        void* p = r.allocate(bytes, alignment);
        EXPECT_TRUE(IsAligned(p, alignment)) << bytes << " bytes at " << alignment;
        std::memset(p, 0xab, bytes);
        blocks.push_back(Block{p, bytes, alignment});
      }
    }
    EXPECT_EQ(r.GetStats().direct, 0u) << "max_block_size " << max;
    for (const Block& b : blocks) r.deallocate(b.p, b.bytes, b.alignment);
    // And a second round reuses them.
    for (const Block& b : blocks) r.deallocate(r.allocate(b.bytes, b.alignment), b.bytes,
                                               b.alignment);
    EXPECT_GT(r.GetStats().hits, 0u);
  }
}

}  // namespace
}  // namespace syncpool
