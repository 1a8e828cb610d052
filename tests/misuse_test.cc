// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Misuse that debug checks catch: a PoolResource deallocate with the wrong size or alignment,
// of a pointer the resource never handed out, or of a block already deallocated; a second
// Put of the same object into a Pool<T>. Each aborts with a message naming the mistake. Debug
// checks are set explicitly, so these tests run the same in optimized builds.
//
// Without debug checks, the spans that hold a PoolResource's blocks of up to 4 KiB catch a
// second deallocate and a pointer that is no block of theirs when the block comes back to its
// span (a drain), and abort just the same.
//
// Correct use with debug checks on behaves as without them, and a correct workload with debug
// checks off never aborts.
//
// Under AddressSanitizer (--config=asan), blocks and objects that sit in a cache are poisoned:
// a write after deallocate or Put is reported, with or without debug checks.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"
#include "cpu_affinity.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::TrackingResource;
using ::syncpool::testing::ScopedAffinity;

Options DebugOptions(Sweeper* sweeper, bool debug_checks) {
  Options options;
  options.sweeper = sweeper;
  options.debug_checks = debug_checks;
  return options;
}

class MisuseTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }

  Sweeper sweeper_{Sweeper::Options::Manual()};
};

using MisuseDeathTest = MisuseTest;

// The bytes of a span of the small classes (64 KiB: internal::SpanBytes(), src/spans.h).
constexpr uint64_t kSpanBytes = 64 * 1024;

TEST_F(MisuseDeathTest, DeallocateWithAnotherSizeAborts) {
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, true), &upstream);
  void* p = resource.allocate(100, 8);
  // Another size class, and the same class (112 serves both 100 and 101).
  EXPECT_DEATH(resource.deallocate(p, 200, 8), "[Ss][Ii][Zz][Ee]");
  EXPECT_DEATH(resource.deallocate(p, 101, 8), "[Ss][Ii][Zz][Ee]");
  resource.deallocate(p, 100, 8);
  EXPECT_TRUE(upstream.errors().empty());
}

// A container that outlives its resource: with debug checks, a deallocate through
// PoolAllocator's (non-virtual) path into the destroyed resource aborts with a message, while
// the resource's memory is not reused (here it is storage the test keeps). (Through
// std::pmr's virtual call the C++ runtime stops it first: "pure virtual method called".)
TEST_F(MisuseDeathTest, DeallocateIntoADestroyedResourceAborts) {
  EXPECT_DEATH(
      {
        alignas(PoolResource) static unsigned char storage[sizeof(PoolResource)];
        Options options;
        options.debug_checks = true;
        PoolResource* resource = new (storage) PoolResource(options);
        void* p = resource->Allocate(100);
        resource->~PoolResource();
        resource->Deallocate(p, 100);
      },
      "deallocate of 0x[0-9a-f]+ \\(size 100\\) into a resource already destroyed");
}

TEST_F(MisuseDeathTest, DeallocateLargeBlockWithAnotherSizeAborts) {
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, true), &upstream);
  const size_t big = resource.max_block_size() + 1;
  void* p = resource.allocate(big, 8);
  EXPECT_DEATH(resource.deallocate(p, big + 4096, 8), "[Ss][Ii][Zz][Ee]");
  resource.deallocate(p, big, 8);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(MisuseDeathTest, DeallocateWithAnotherAlignmentAborts) {
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, true), &upstream);
  void* p = resource.allocate(64, 64);
  EXPECT_DEATH(resource.deallocate(p, 64, 16), "[Aa][Ll][Ii][Gg][Nn]");
  EXPECT_DEATH(resource.deallocate(p, 64, 8), "[Aa][Ll][Ii][Gg][Nn]");
  resource.deallocate(p, 64, 64);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(MisuseDeathTest, DeallocateOfForeignPointerAborts) {
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, true), &upstream);
  alignas(64) static char not_from_the_pool[128];
  EXPECT_DEATH(resource.deallocate(not_from_the_pool, 128, 16),
               "[Dd]id not hand it out");
  // A block of another resource is just as foreign.
  PoolResource other(DebugOptions(&sweeper_, true), &upstream);
  void* p = other.allocate(32, 16);
  EXPECT_DEATH(resource.deallocate(p, 32, 16),
               "[Dd]id not hand it out");
  other.deallocate(p, 32, 16);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(MisuseDeathTest, SecondDeallocateAborts) {
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, true), &upstream);
  void* p = resource.allocate(48, 16);
  resource.deallocate(p, 48, 16);
  EXPECT_DEATH(resource.deallocate(p, 48, 16), "([Dd]ouble|[Nn]ot allocated)");
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(MisuseDeathTest, SecondDeallocateOfLargeBlockAborts) {
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, true), &upstream);
  const size_t big = resource.max_block_size() * 2;
  void* p = resource.allocate(big, 16);
  resource.deallocate(p, big, 16);
  EXPECT_DEATH(resource.deallocate(p, big, 16), "([Dd]ouble|[Nn]ot allocated)");
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

// Without debug checks, the span layer still catches misuse of the classes it keeps (blocks of
// up to 4 KiB), late: where the blocks come back to their spans, when a sweep drains the
// caches. Everything runs on one fake CPU with a manual sweeper, so the child of each death
// test makes the same calls as the parent up to the statement.

TEST_F(MisuseDeathTest, SecondDeallocateAbortsInTheSpansWithoutDebugChecks) {
  testing::ScopedFakeCpu cpu(0);
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, false), &upstream);
  void* p = resource.allocate(64, 8);
  // Another block of the same span, held throughout: the span stays when p's block is free.
  void* held = resource.allocate(64, 8);
  ASSERT_NE(p, held);
  resource.deallocate(p, 64, 8);
  // Two epochs: the block becomes a victim, then goes back to its span.
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  const Stats drained = resource.GetStats();
  ASSERT_EQ(drained.cached_blocks(), 0u);
  ASSERT_EQ(drained.span_bytes, kSpanBytes);
  ASSERT_EQ(drained.span_block_bytes - drained.span_free_bytes, 64u);  // `held` only.
  // The second deallocate is cached as the first was; the drain finds the block free already.
  EXPECT_DEATH(
      {
        resource.deallocate(p, 64, 8);
        sweeper_.SweepNow();
        sweeper_.SweepNow();
      },
      "free already");

  // Both deallocates in the cache before a drain: the second copy finds the first one's bit.
  void* again = resource.allocate(64, 8);
  ASSERT_EQ(again, p);  // The lowest free block of the span.
  EXPECT_DEATH(
      {
        resource.deallocate(again, 64, 8);
        resource.deallocate(again, 64, 8);
        sweeper_.SweepNow();
        sweeper_.SweepNow();
      },
      "free already");

  resource.deallocate(again, 64, 8);
  resource.deallocate(held, 64, 8);
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  EXPECT_EQ(resource.GetStats().span_bytes, 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(MisuseDeathTest, DeallocateOfNoBlockAbortsInTheSpansWithoutDebugChecks) {
  testing::ScopedFakeCpu cpu(0);
  TrackingResource upstream;
  PoolResource resource(DebugOptions(&sweeper_, false), &upstream);
  void* p = resource.allocate(64, 8);  // Held throughout: its span stays.
  auto drain = [this] {
    sweeper_.SweepNow();
    sweeper_.SweepNow();
  };
  // A pointer into the span that is not the start of a block.
  EXPECT_DEATH(
      {
        resource.deallocate(static_cast<char*>(p) + 8, 64, 8);
        drain();
      },
      "not one");
  // A block of the span given back as one of another class (32 bytes, in spans as well).
  EXPECT_DEATH(
      {
        resource.deallocate(p, 32, 8);
        drain();
      },
      "not one");
  // A block of another PoolResource, held by it (so its span stays with the other).
  PoolResource other(DebugOptions(&sweeper_, false), &upstream);
  void* foreign = other.allocate(64, 8);
  EXPECT_DEATH(
      {
        resource.deallocate(foreign, 64, 8);
        drain();
      },
      "not one");

  other.deallocate(foreign, 64, 8);
  resource.deallocate(p, 64, 8);
  drain();
  EXPECT_EQ(resource.GetStats().span_bytes, 0u);
  EXPECT_EQ(other.GetStats().span_bytes, 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

// Blocks outside the spans (classes above 4 KiB, requests passed upstream) are recorded while
// the resource holds them: one that goes back with another size, or that the resource did not
// take, or a second time, aborts when it reaches the upstream, debug checks or not.
TEST_F(MisuseDeathTest, LargeBlocksAreCheckedWhenTheyGoUpstreamWithoutDebugChecks) {
  TrackingResource upstream;
  Options options = DebugOptions(&sweeper_, false);
  options.name = "large";
  PoolResource resource(options, &upstream);
  constexpr size_t kDirect = 1 << 20;  // Above max_block_size: straight upstream.
  void* p = resource.allocate(kDirect);
  EXPECT_DEATH(resource.deallocate(p, kDirect / 2),
               "PoolResource \"large\": deallocate of 0x[0-9a-f]+ with size 524288 and "
               "alignment 16, but it was allocated with size 1048576");
  std::vector<char> elsewhere(kDirect);
  EXPECT_DEATH(resource.deallocate(elsewhere.data(), kDirect), "did not hand it out");
  resource.deallocate(p, kDirect);
  EXPECT_DEATH(resource.deallocate(p, kDirect), "double deallocate");
  EXPECT_TRUE(upstream.errors().empty());
}

struct Buffer {
  char bytes[256] = {};
};

// The message names the pool (its Options::name, or its kind and address) and the mistake, and
// a stack follows it.
TEST_F(MisuseDeathTest, TheMessageNamesThePoolAndPrintsAStack) {
  Options options = DebugOptions(&sweeper_, true);
  options.name = "orders";
  PoolResource named(options);
  void* p = named.allocate(100);
  EXPECT_DEATH(named.deallocate(p, 2000),
               "syncpool: PoolResource \"orders\": deallocate of 0x[0-9a-f]+ with size 2000, but "
               "it was allocated with size 100\n    @ 0x[0-9a-f]+  ");
  named.deallocate(p, 100);
  PoolResource unnamed(DebugOptions(&sweeper_, true));
  EXPECT_DEATH(unnamed.deallocate(&options, 64), "syncpool: PoolResource at 0x[0-9a-f]+: deallocate");
  Pool<Buffer> pool([] { return std::make_unique<Buffer>(); }, nullptr, options);
  Buffer* raw = pool.Get().release().release();
  pool.Put(std::unique_ptr<Buffer>(raw));
  EXPECT_DEATH(pool.Put(std::unique_ptr<Buffer>(raw)), "syncpool: Pool \"orders\": double Put");
}

// Unset, debug_checks follow Options::checks_by_build, which the header sets from the build of
// the code that makes the Options (this test's build decides what it reads by default).
TEST_F(MisuseDeathTest, UnsetChecksFollowTheBuildOfTheCodeThatMadeTheOptions) {
  if (std::getenv("SYNCPOOL_DEBUG") != nullptr) GTEST_SKIP() << "SYNCPOOL_DEBUG decides";
  Options options;
  options.sweeper = &sweeper_;
#ifdef NDEBUG
  EXPECT_FALSE(options.checks_by_build);
#else
  EXPECT_TRUE(options.checks_by_build);
#endif
  options.checks_by_build = true;  // As a debug build of an application makes them.
  PoolResource checked(options);
  void* p = checked.allocate(100);
  EXPECT_DEATH(checked.deallocate(p, 2000), "with size 2000, but it was allocated with size 100");
  checked.deallocate(p, 100);
  options.checks_by_build = false;  // As a release build makes them: the caches run unlocked.
  PoolResource unchecked(options);
  EXPECT_EQ(std::string(unchecked.GetStats().mode_reason).find("debug checks"), std::string::npos)
      << unchecked.GetStats().mode_reason;
  options.debug_checks = true;  // Set, the field wins over the build.
  PoolResource forced(options);
  p = forced.allocate(100);
  EXPECT_DEATH(forced.deallocate(p, 2000), "with size 2000");
  forced.deallocate(p, 100);
}

// Debug checks are a layer, not a mode: a checked pool or resource runs its cache in the mode
// an unchecked one gets (restartable sequences where usable), and every call still reaches
// the checks (the death tests above run so).
TEST_F(MisuseTest, DebugChecksKeepTheCachesMode) {
  PoolResource checked(DebugOptions(&sweeper_, true));
  PoolResource unchecked(DebugOptions(&sweeper_, false));
  EXPECT_STREQ(checked.GetStats().mode, unchecked.GetStats().mode);
  EXPECT_EQ(checked.uses_rseq(), unchecked.uses_rseq());
  Pool<Buffer> checked_pool([] { return std::make_unique<Buffer>(); }, nullptr,
                            DebugOptions(&sweeper_, true));
  Pool<Buffer> unchecked_pool([] { return std::make_unique<Buffer>(); }, nullptr,
                              DebugOptions(&sweeper_, false));
  EXPECT_STREQ(checked_pool.GetStats().mode, unchecked_pool.GetStats().mode);
}

// Go's symmetry: Put of a handle caches its object and leaves the handle empty.
TEST_F(MisuseTest, PutOfAHandleCachesItsObject) {
  Pool<Buffer> pool([] { return std::make_unique<Buffer>(); }, nullptr,
                    DebugOptions(&sweeper_, true));
  auto handle = pool.Get();
  Buffer* const raw = handle.get();
  pool.Put(std::move(handle));
  EXPECT_EQ(handle.get(), nullptr);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 1u);
  EXPECT_EQ(pool.Get().get(), raw);
}

TEST_F(MisuseDeathTest, SecondPutOfTheSameObjectAborts) {
  Pool<Buffer> pool([] { return std::make_unique<Buffer>(); }, nullptr,
                    DebugOptions(&sweeper_, true));
  Buffer* raw = new Buffer;
  std::unique_ptr<Buffer> first(raw);
  std::unique_ptr<Buffer> second(raw);
  pool.Put(std::move(first));
  EXPECT_DEATH(pool.Put(std::move(second)), "[Dd]ouble [Pp]ut");
  // The statement ran only in the child: here `second` still wraps the object the pool owns.
  EXPECT_EQ(second.release(), raw);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 1u);
}

TEST_F(MisuseDeathTest, PutAfterReleaseThroughAHandleAborts) {
  // One CPU's cache throughout: a thread that migrated would not find the object on its new
  // CPU (only victims are stolen) and would make a new one.
  testing::ScopedFakeCpu cpu(0);
  Pool<Buffer> pool([] { return std::make_unique<Buffer>(); }, nullptr,
                    DebugOptions(&sweeper_, true));
  auto handle = pool.Get();
  Buffer* raw = handle.get();
  handle.reset();  // Back in the pool.
  EXPECT_DEATH(pool.Put(std::unique_ptr<Buffer>(raw)), "[Dd]ouble [Pp]ut");
  EXPECT_EQ(pool.Get().get(), raw);  // The pool still holds it, once.
}

TEST_F(MisuseTest, DebugChecksKeepCorrectResourceUseWorking) {
  // The counts below are of one CPU's cache and one CPU's spans: a move to another CPU in the
  // middle (seen on a busy machine) would miss in its cache and take spans of its own.
  ScopedAffinity restore;
  const std::vector<int> cpus = testing::AllowedCpus();
  ASSERT_FALSE(cpus.empty());
  ASSERT_TRUE(testing::PinTo(cpus.front()));
  TrackingResource upstream;
  {
    Options options = DebugOptions(&sweeper_, true);
    options.refill_bytes = 0;  // One block per miss: the counts below are per request.
    PoolResource resource(options, &upstream);
    const size_t big = resource.max_block_size() + 1;
    struct Request {
      size_t bytes;
      size_t alignment;
    };
    const std::vector<Request> requests = {{0, 8},    {16, 16}, {100, 8},
                                           {1000, 64}, {64, 128}, {big, 16}};
    for (int round = 0; round < 3; ++round) {
      std::vector<void*> blocks;
      for (const Request& r : requests) {
        void* p = resource.allocate(r.bytes, r.alignment);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % r.alignment, 0u);
        blocks.push_back(p);
      }
      for (size_t i = 0; i < requests.size(); ++i) {
        resource.deallocate(blocks[i], requests[i].bytes, requests[i].alignment);
      }
    }
    const Stats stats = resource.GetStats();
    // Four pooled requests a round: round 0 misses, rounds 1 and 2 hit their own blocks.
    EXPECT_EQ(stats.misses, 4u);
    EXPECT_EQ(stats.hits, 8u);
    EXPECT_EQ(stats.direct, 6u);
    EXPECT_EQ(stats.cached_blocks(), 4u);
    // The pooled blocks live in spans taken upstream, one per class: the 0- and 16-byte
    // requests share the 16-byte class, so three spans of 64 KiB hold the four cached blocks,
    // and the direct blocks are all back upstream.
    EXPECT_EQ(upstream.live_blocks(), 3u);
    EXPECT_EQ(stats.span_bytes, 3u * kSpanBytes);
    EXPECT_EQ(upstream.live_bytes(), stats.span_bytes);
    EXPECT_EQ(stats.span_block_bytes - stats.span_free_bytes, stats.cached_bytes());

    // A block that came back may be handed out and deallocated again.
    void* p = resource.allocate(100, 8);
    resource.deallocate(p, 100, 8);
    sweeper_.SweepNow();
    sweeper_.SweepNow();
    // Drained into their spans, wholly free, which went back upstream at the epoch's end.
    const Stats swept = resource.GetStats();
    EXPECT_EQ(swept.cached_blocks(), 0u);
    EXPECT_EQ(swept.span_bytes, 0u);
    EXPECT_EQ(swept.span_released_bytes, 3u * kSpanBytes);
    EXPECT_EQ(upstream.live_blocks(), 0u);
  }
  EXPECT_EQ(upstream.live_bytes(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

TEST_F(MisuseTest, DebugChecksKeepCorrectPoolUseWorking) {
  int made = 0;
  Pool<Buffer> pool(
      [&made] {
        ++made;
        return std::make_unique<Buffer>();
      },
      [](Buffer& b) { b.bytes[0] = 0; }, DebugOptions(&sweeper_, true));
  {
    auto a = pool.Get();
    auto b = pool.Get();
    ASSERT_TRUE(a && b);
    EXPECT_NE(a.get(), b.get());
    a->bytes[0] = 1;
    b->bytes[0] = 1;
  }
  // Each Get takes the object out of the registry, so putting it back again is no double Put.
  for (int i = 0; i < 10; ++i) {
    auto h = pool.Get();
    ASSERT_TRUE(h);
    EXPECT_EQ(h->bytes[0], 0);  // The reset hook ran.
    h->bytes[0] = 1;
    if (i % 2 == 0) pool.Put(h.release());  // An explicit Put of a released object.
  }
  EXPECT_EQ(made, 2);
  const Stats stats = pool.GetStats();
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.hits, 10u);
  EXPECT_EQ(stats.cached_blocks(), 2u);
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
  EXPECT_EQ(pool.GetStats().swept_blocks, 2u);
}

TEST_F(MisuseTest, CorrectWorkloadWithoutDebugChecksRuns) {
  TrackingResource upstream;
  {
    PoolResource resource(DebugOptions(&sweeper_, false), &upstream);
    Pool<Buffer> pool([] { return std::make_unique<Buffer>(); }, nullptr,
                      DebugOptions(&sweeper_, false));
    std::vector<std::pair<void*, size_t>> blocks;
    for (int round = 0; round < 50; ++round) {
      for (size_t bytes : {size_t{1}, size_t{24}, size_t{300}, size_t{5000}}) {
        blocks.emplace_back(resource.allocate(bytes * (round % 3 + 1), 16),
                            bytes * (round % 3 + 1));
      }
      if (round % 2 == 1) {
        for (const auto& [p, bytes] : blocks) resource.deallocate(p, bytes, 16);
        blocks.clear();
      }
      auto a = pool.Get();
      auto b = pool.Get();
      ASSERT_TRUE(a && b);
      if (round % 10 == 0) sweeper_.SweepNow();
    }
    for (const auto& [p, bytes] : blocks) resource.deallocate(p, bytes, 16);
    const Stats stats = resource.GetStats();
    EXPECT_EQ(stats.hits + stats.misses, 200u);
    EXPECT_EQ(pool.GetStats().hits + pool.GetStats().misses, 100u);
  }
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty());
}

struct Payload {
  int value = 0;
};

TEST_F(MisuseDeathTest, UseOfCachedMemoryIsReportedByAddressSanitizer) {
#ifndef ABSL_HAVE_ADDRESS_SANITIZER
  GTEST_SKIP() << "needs AddressSanitizer (--config=asan)";
#else
  for (const bool debug_checks : {false, true}) {
    TrackingResource upstream;
    PoolResource resource(DebugOptions(&sweeper_, debug_checks), &upstream);
    auto* block = static_cast<volatile char*>(resource.allocate(100, 8));
    block[99] = 1;  // Allocated: fine.
    resource.deallocate(const_cast<char*>(block), 100, 8);
    EXPECT_DEATH(block[0] = 2, "use-after-poison");
    EXPECT_DEATH(block[111] = 2, "use-after-poison");  // The whole 112-byte block.
    // Handed out again: writable again.
    auto* again = static_cast<volatile char*>(resource.allocate(100, 8));
    again[0] = 3;
    resource.deallocate(const_cast<char*>(again), 100, 8);

    Pool<Payload> pool([] { return std::make_unique<Payload>(); }, nullptr,
                       DebugOptions(&sweeper_, debug_checks));
    volatile Payload* object;
    {
      auto handle = pool.Get();
      object = handle.get();
      object->value = 1;
    }  // Put back: poisoned.
    EXPECT_DEATH(object->value = 2, "use-after-poison");
    pool.Clear();  // Released objects are unpoisoned before they are destroyed.
    resource.Trim();
    EXPECT_TRUE(upstream.errors().empty());
  }
#endif
}

}  // namespace
}  // namespace syncpool
