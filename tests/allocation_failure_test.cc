// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The library's own bookkeeping (the debug registry, the record of large blocks, the shards of
// the span layer, the sweeper's registry) allocates with operator new on the calling thread.
// Here operator new is replaced so that a test can make the next such allocation on its thread
// throw std::bad_alloc, at every point in turn, and check that the call that needed it throws
// std::bad_alloc, leaves the pool consistent, and loses nothing: every block stays accounted
// for, and the upstream gets back everything at destruction.

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <memory_resource>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"

namespace {

// Set on the calling thread: that many operator new calls on it succeed, and the one after
// throws std::bad_alloc (once). -1: none fails.
thread_local int64_t fail_after = -1;

void* Allocate(size_t bytes, size_t alignment) {
  if (fail_after > 0) {
    --fail_after;
  } else if (fail_after == 0) {
    fail_after = -1;
    throw std::bad_alloc();
  }
  if (bytes == 0) bytes = 1;
  void* p = alignment > alignof(std::max_align_t) ? std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment)
                                                  : std::malloc(bytes);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(size_t bytes) { return Allocate(bytes, 0); }
void* operator new[](size_t bytes) { return Allocate(bytes, 0); }
void* operator new(size_t bytes, std::align_val_t a) {
  return Allocate(bytes, static_cast<size_t>(a));
}
void* operator new[](size_t bytes, std::align_val_t a) {
  return Allocate(bytes, static_cast<size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace syncpool {
namespace {

// An upstream on malloc (never operator new, so that injected failures reach the pool's own
// bookkeeping only) that counts what it has handed out.
class CountingUpstream final : public std::pmr::memory_resource {
 public:
  int64_t live_bytes() const { return live_bytes_.load(); }
  int64_t live_blocks() const { return live_blocks_.load(); }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    void* p = std::aligned_alloc(alignment < 16 ? 16 : alignment,
                                 (bytes + alignment - 1) / alignment * alignment);
    if (p == nullptr) throw std::bad_alloc();
    live_bytes_ += static_cast<int64_t>(bytes);
    ++live_blocks_;
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t) override {
    std::free(p);
    live_bytes_ -= static_cast<int64_t>(bytes);
    --live_blocks_;
  }
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

  std::atomic<int64_t> live_bytes_{0};
  std::atomic<int64_t> live_blocks_{0};
};

struct Live {
  void* p;
  size_t bytes;
};

// Allocates `count` blocks of the sizes in `sizes` (in turn) from `r`, each first with the
// next operator new failing, then, when that threw std::bad_alloc, again without. Returns the
// blocks; `*failures` counts the first tries that threw.
std::vector<Live> AllocateUnderFailures(PoolResource& r, const std::vector<size_t>& sizes,
                                        int count, int* failures) {
  std::vector<Live> live;
  live.reserve(count);  // Before any failure is armed: the test's own vector never fails.
  for (int i = 0; i < count; ++i) {
    const size_t bytes = sizes[i % sizes.size()];
    void* p = nullptr;
    fail_after = 0;
    try {
      p = r.allocate(bytes);
    } catch (const std::bad_alloc&) {
      ++*failures;
    }
    fail_after = -1;
    if (p == nullptr) p = r.allocate(bytes);
    live.push_back({p, bytes});
  }
  return live;
}

void ExpectDistinct(const std::vector<Live>& live) {
  std::set<void*> seen;
  for (const Live& b : live) EXPECT_TRUE(seen.insert(b.p).second) << "block " << b.p << " twice";
}

// With the debug checks on, every allocation is recorded in the registry: a failed growth of
// it must leave the block unhanded and the registry whole, so that every later deallocate is
// still checked against the right record.
TEST(AllocationFailureTest, TheDebugRegistrySurvivesAFailedGrowth) {
  CountingUpstream upstream;
  {
    Options options;
    options.debug_checks = true;
    PoolResource r(options, &upstream);
    int failures = 0;
    std::vector<Live> live = AllocateUnderFailures(r, {16, 100, 1000, 3000}, 5000, &failures);
    EXPECT_GT(failures, 5);  // The registry grew several times, each after a failed try.
    ExpectDistinct(live);
    for (const Live& b : live) r.deallocate(b.p, b.bytes);
    const Stats s = r.GetStats();
    EXPECT_EQ(s.in_use_bytes, 0u);
    // And again, now that every block has been back: the registry still knows none is out.
    live = AllocateUnderFailures(r, {64}, 100, &failures);
    for (const Live& b : live) r.deallocate(b.p, b.bytes);
  }
  EXPECT_EQ(upstream.live_bytes(), 0);
  EXPECT_EQ(upstream.live_blocks(), 0);
}

// Without the checks, a request above the classes goes upstream and is recorded (so that the
// resource can return it at destruction): when the record cannot be made, the block goes back
// upstream and the request throws.
TEST(AllocationFailureTest, ALargeBlockThatCannotBeRecordedGoesBack) {
  CountingUpstream upstream;
  {
    Options options;
    options.debug_checks = false;
    PoolResource r(options, &upstream);
    const size_t large = r.max_block_size() + 1;
    int failures = 0;
    std::vector<Live> live = AllocateUnderFailures(r, {large, 2 * large}, 300, &failures);
    EXPECT_GT(failures, 0);
    ExpectDistinct(live);
    // What the upstream holds is what is handed out, and no more: nothing leaked on a failure.
    EXPECT_EQ(upstream.live_blocks(), static_cast<int64_t>(live.size()));
    int64_t large_bytes = 0;
    for (const Live& b : live) large_bytes += static_cast<int64_t>(b.bytes);
    EXPECT_GE(upstream.live_bytes(), large_bytes);
    for (size_t i = 0; i < live.size(); i += 2) r.deallocate(live[i].p, live[i].bytes);
    // The other half is left outstanding: destruction gives it back.
  }
  EXPECT_EQ(upstream.live_bytes(), 0);
  EXPECT_EQ(upstream.live_blocks(), 0);
}

// Constructing a pool allocates (its caches, its registration with the sweeper), and so does
// its first use: a failure at any of those points throws std::bad_alloc and leaves nothing
// behind, and the next try works.
TEST(AllocationFailureTest, ConstructionAndFirstUseFailCleanlyAtEveryPoint) {
  CountingUpstream upstream;
  int failed = 0;
  bool completed = false;
  for (int point = 0; point < 10000 && !completed; ++point) {
    Options options;
    options.debug_checks = (point % 2) == 1;
    fail_after = point;
    try {
      PoolResource r(options, &upstream);
      void* p = r.allocate(200);
      r.deallocate(p, 200);
      void* q = r.allocate(r.max_block_size() + 1);
      r.deallocate(q, r.max_block_size() + 1);
      Pool<int> pool([] { return std::make_unique<int>(0); }, nullptr, options);
      Pool<int>::Handle h = pool.Get();
      *h = point;
      pool.Put(std::move(h));
      h = pool.Get();
      EXPECT_EQ(*h, point);
      completed = fail_after > 0;  // No operator new was left to fail: every point was tried.
    } catch (const std::bad_alloc&) {
      ++failed;
    }
    fail_after = -1;
    ASSERT_EQ(upstream.live_bytes(), 0) << "at point " << point;
  }
  EXPECT_TRUE(completed);
  EXPECT_GT(failed, 10);
}

// Statistics as text (DebugString(), ToString()): a failure at any allocation throws
// std::bad_alloc, and a try that completes gives the same text as without failures.
TEST(AllocationFailureTest, StatsTextThrowsOrIsWhole) {
  CountingUpstream upstream;
  Options options;
  options.name = "stats under failures";
  PoolResource r(options, &upstream);
  void* p = r.allocate(100);
  r.deallocate(p, 100);
  const Stats stats = r.GetStats();
  const std::string debug = stats.DebugString();
  const std::string line = stats.ToString();
  int failed = 0;
  bool completed = false;
  for (int point = 0; point < 1000 && !completed; ++point) {
    fail_after = point;
    try {
      const std::string a = stats.DebugString();
      const std::string b = stats.ToString();
      completed = fail_after > 0;
      fail_after = -1;
      EXPECT_EQ(a, debug);
      EXPECT_EQ(b, line);
    } catch (const std::bad_alloc&) {
      ++failed;
    }
    fail_after = -1;
  }
  EXPECT_TRUE(completed);
  EXPECT_GT(failed, 0);
}

}  // namespace
}  // namespace syncpool
