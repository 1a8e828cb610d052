// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of pools of buffers: OwnedBytes<T> (syncpool/owned_bytes.h), Stats and budgets in the
// bytes objects own, Options::max_object_bytes, and the epoch that releases the largest idle
// objects first when a budget must be met.

#include "syncpool/owned_bytes.h"

#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/base/config.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "src/fake_cpu.h"

namespace syncpool {
namespace {

using ::syncpool::testing::ScopedFakeCpu;

constexpr size_t kMiB = size_t{1} << 20;

// A buffer type of the tests' own, with its OwnedBytes specialisation below: it counts the
// bytes of every Buffer destroyed, so that a test can compare what a pool said it cached with
// what it destroyed.
struct Buffer {
  static std::atomic<uint64_t> destroyed_bytes;
  ~Buffer() { destroyed_bytes.fetch_add(sizeof(Buffer) + data.capacity()); }
  std::vector<char> data;
};
std::atomic<uint64_t> Buffer::destroyed_bytes{0};

// A type nobody said anything about.
struct Plain {
  char bytes[48];
};

}  // namespace

template <>
struct OwnedBytes<Buffer> {
  static size_t Of(const Buffer& b) { return sizeof(Buffer) + b.data.capacity(); }
};

namespace {

// The resident set of the process, from /proc/self/statm.
[[maybe_unused]] size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  const int read = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return read == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

std::unique_ptr<std::string> StringOf(size_t capacity) {
  auto s = std::make_unique<std::string>();
  s->reserve(capacity);
  return s;
}

TEST(OwnedBytesTest, ContainersCountTheirCapacity) {
  std::string small = "short";
  EXPECT_EQ(OwnedBytes<std::string>::Of(small), sizeof(std::string));  // Its inline buffer.
  std::string large;
  large.reserve(1000);
  EXPECT_EQ(OwnedBytes<std::string>::Of(large), sizeof(std::string) + large.capacity());
  std::u32string wide;
  wide.reserve(100);
  EXPECT_EQ(OwnedBytes<std::u32string>::Of(wide),
            sizeof(std::u32string) + wide.capacity() * sizeof(char32_t));
  std::vector<int> v;
  v.reserve(100);
  EXPECT_EQ(OwnedBytes<std::vector<int>>::Of(v), sizeof(v) + 100 * sizeof(int));
  std::vector<bool> bits;
  bits.reserve(1000);
  EXPECT_EQ(OwnedBytes<std::vector<bool>>::Of(bits), sizeof(bits) + (bits.capacity() + 7) / 8);
  absl::InlinedVector<int, 8> inlined(4);
  EXPECT_EQ(OwnedBytes<decltype(inlined)>::Of(inlined), sizeof(inlined));
  inlined.resize(100);
  EXPECT_EQ(OwnedBytes<decltype(inlined)>::Of(inlined),
            sizeof(inlined) + inlined.capacity() * sizeof(int));
  absl::flat_hash_map<int, int> map;
  map.reserve(100);
  EXPECT_GE(OwnedBytes<decltype(map)>::Of(map), sizeof(map) + 100 * 2 * sizeof(int));
  Buffer b;
  b.data.reserve(64);
  EXPECT_EQ(OwnedBytes<Buffer>::Of(b), sizeof(Buffer) + 64);

  static_assert(kKnowsOwnedBytes<std::string>);
  static_assert(kKnowsOwnedBytes<std::vector<char>>);
  static_assert(kKnowsOwnedBytes<Buffer>);
  static_assert(!kKnowsOwnedBytes<Plain>);
  static_assert(!kKnowsOwnedBytes<int>);
}

// With debug checks off (the caches' inline paths: restartable sequences, or per thread in the
// _perthread twin) and on (the locked mode, every call on the slow paths).
class BufferPoolTest : public ::testing::TestWithParam<bool> {
 protected:
  Options PoolOptions() {
    Options options;
    options.sweeper = &sweeper_;
    options.debug_checks = GetParam();
    return options;
  }

  Sweeper sweeper_{Sweeper::Options::Manual()};
};

TEST_P(BufferPoolTest, StatsCountWhatTheObjectsOwn) {
  ScopedFakeCpu cpu(0);  // Gets find what Puts left.
  Pool<std::string> pool(nullptr, [](std::string& s) { s.clear(); }, PoolOptions());
  uint64_t owned = 0;
  for (size_t i = 0; i < 10; ++i) {
    auto s = StringOf((i + 1) * 10000);
    s->append(100, 'x');
    owned += OwnedBytes<std::string>::Of(*s);  // clear() keeps the capacity.
    pool.Put(std::move(s));
  }
  Stats stats = pool.GetStats();
  EXPECT_EQ(stats.cached_blocks(), 10u);
  EXPECT_EQ(stats.cached_bytes(), owned);
  EXPECT_GT(stats.cached_bytes(), 10 * 10000u);
  // A Get takes what its object owns out of the count.
  uint64_t taken = 0;
  std::vector<Pool<std::string>::Handle> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(pool.Get());
    ASSERT_TRUE(held.back());
    EXPECT_TRUE(held.back()->empty());
    taken += OwnedBytes<std::string>::Of(*held.back());
  }
  EXPECT_EQ(pool.GetStats().cached_bytes(), owned - taken);
  held.clear();
  EXPECT_EQ(pool.GetStats().cached_bytes(), owned);
  // Sweeps count what they release in the same bytes.
  sweeper_.SweepNow();
  sweeper_.SweepNow();
  stats = pool.GetStats();
  EXPECT_EQ(stats.cached_bytes(), 0u);
  EXPECT_EQ(stats.swept_blocks, 10u);
  EXPECT_EQ(stats.swept_bytes, owned);
}

TEST_P(BufferPoolTest, APlainTypeCountsSizeofAndIgnoresMaxObjectBytes) {
  Options options = PoolOptions();
  options.max_object_bytes = 1;
  Pool<Plain> pool(nullptr, nullptr, options);
  for (int i = 0; i < 5; ++i) pool.Put(std::make_unique<Plain>());
  const Stats stats = pool.GetStats();
  EXPECT_EQ(stats.cached_blocks(), 5u);
  EXPECT_EQ(stats.cached_bytes(), 5 * sizeof(Plain));
  EXPECT_EQ(stats.oversized_objects, 0u);
}

TEST_P(BufferPoolTest, AnObjectOverMaxObjectBytesIsDestroyedAtPut) {
  ScopedFakeCpu cpu(0);  // Gets find what Puts left.
  Options options = PoolOptions();
  options.max_object_bytes = 64 * 1024;
  int new_calls = 0;
  Pool<std::string> pool(
      [&new_calls] {
        ++new_calls;
        return std::make_unique<std::string>();
      },
      [](std::string& s) { s.clear(); }, options);
  auto big = StringOf(256 * 1024);
  const uint64_t big_bytes = OwnedBytes<std::string>::Of(*big);
  pool.Put(std::move(big));
  Stats stats = pool.GetStats();
  EXPECT_EQ(stats.oversized_objects, 1u);
  EXPECT_EQ(stats.oversized_bytes, big_bytes);
  EXPECT_EQ(stats.cached_blocks(), 0u);
  EXPECT_EQ(stats.cached_bytes(), 0u);
  // Never handed out again: the next Get finds nothing and calls New.
  auto h = pool.Get();
  EXPECT_EQ(new_calls, 1);
  ASSERT_TRUE(h);
  // A buffer that grows past the limit while held goes too when it comes back.
  h->reserve(100 * 1024);
  h.reset();
  EXPECT_EQ(pool.GetStats().oversized_objects, 2u);
  // One at the limit stays.
  auto fits = std::make_unique<std::string>();
  fits->reserve(64 * 1024 - sizeof(std::string) - 64);
  ASSERT_LE(OwnedBytes<std::string>::Of(*fits), 64u * 1024u);
  const std::string* fits_address = fits.get();
  pool.Put(std::move(fits));
  EXPECT_EQ(pool.GetStats().oversized_objects, 2u);
  auto again = pool.Get();
  // The one that fits (`fits` may occupy the address the destroyed big one had).
  EXPECT_EQ(again.get(), fits_address);
  EXPECT_EQ(new_calls, 1);
}

// The goal: a budget of 8 MiB, 64 strings of 1 MiB.
TEST_P(BufferPoolTest, TheBudgetCountsOwnedBytes) {
  Options options = PoolOptions();
  options.max_cached_bytes = 8 * kMiB;
  Pool<std::string> pool(nullptr, [](std::string& s) { s.clear(); }, options);
  uint64_t put_bytes = 0;
  for (int i = 0; i < 64; ++i) {
    auto s = StringOf(kMiB);
    put_bytes += OwnedBytes<std::string>::Of(*s);
    pool.Put(std::move(s));
    ASSERT_LE(pool.GetStats().cached_bytes(), 8 * kMiB) << "after " << i + 1 << " Puts";
  }
  Stats stats = pool.GetStats();
  EXPECT_GE(stats.cached_blocks(), 7u);  // Room for 7 of them: 1 MiB and 32 bytes each.
  EXPECT_EQ(stats.cached_blocks() + stats.over_budget_blocks, 64u);
  EXPECT_EQ(stats.cached_bytes() + stats.over_budget_bytes, put_bytes);
  // Every object cached is one of those strings, and the count is exact.
  uint64_t got = 0;
  std::vector<Pool<std::string>::Handle> held;
  while (auto h = pool.Get()) {
    got += OwnedBytes<std::string>::Of(*h);
    held.push_back(std::move(h));
  }
  // A Get reaches its own CPU's cache and the shared layer, not other CPUs' caches.
  EXPECT_LE(got, stats.cached_bytes());
  EXPECT_EQ(pool.GetStats().cached_bytes(), stats.cached_bytes() - got);
  // Epochs keep the budget too.
  held.clear();
  sweeper_.SweepNow();
  EXPECT_LE(pool.GetStats().cached_bytes(), 8 * kMiB);
}

// The same, against the resident set: what Stats says the pool caches is what stays resident,
// within a page per string. glibc's mmap threshold is fixed at 128 KiB, so that each string is
// a mapping of its own, given back when the string is destroyed (for the rest of this test
// binary too). Not under the sanitizers, whose allocators keep freed memory.
TEST_P(BufferPoolTest, TheResidentSetAgreesWithStats) {
#if defined(ABSL_HAVE_ADDRESS_SANITIZER) || defined(ABSL_HAVE_THREAD_SANITIZER)
  GTEST_SKIP() << "the sanitizers' allocators keep freed memory";
#else
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  Options options = PoolOptions();
  options.max_cached_bytes = 8 * kMiB;
  Pool<std::string> pool(nullptr, [](std::string& s) { s.clear(); }, options);
  std::vector<std::unique_ptr<std::string>> strings;
  strings.reserve(64);
  const size_t before = ResidentBytes();
  for (int i = 0; i < 64; ++i) {
    strings.push_back(StringOf(kMiB));
    strings.back()->assign(kMiB, 'x');  // Resident.
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  ASSERT_GE(ResidentBytes(), before + 64 * kMiB);
  for (auto& s : strings) pool.Put(std::move(s));
  const uint64_t cached = pool.GetStats().cached_bytes();
  const size_t resident = ResidentBytes() - before;
  EXPECT_LE(cached, 8 * kMiB);
  EXPECT_LE(resident, cached + 64 * page);
  EXPECT_GE(resident + 64 * page, cached);
#endif
}

// When an epoch finds the budget exceeded (here the process's, lowered after the objects
// were cached), the largest idle objects go first.
TEST_P(BufferPoolTest, AnEpochOverBudgetReleasesTheLargestFirst) {
  Pool<Buffer> pool(nullptr, nullptr, PoolOptions());
  std::vector<std::unique_ptr<Buffer>> buffers;
  uint64_t total = 0;
  auto add = [&](size_t count, size_t bytes) {
    for (size_t i = 0; i < count; ++i) {
      auto b = std::make_unique<Buffer>();
      b->data.reserve(bytes);
      total += OwnedBytes<Buffer>::Of(*b);
      buffers.push_back(std::move(b));
    }
  };
  add(16, 4096);
  add(2, kMiB);  // In the middle, so that the largest are not simply the last pushed.
  add(4, 256 * 1024);
  for (auto& b : buffers) pool.Put(std::move(b));
  ASSERT_EQ(pool.GetStats().cached_bytes(), total);
  // 1.5 MiB over: both 1 MiB buffers must go, and nothing else.
  SetProcessCacheLimit(total - 3 * kMiB / 2);
  Buffer::destroyed_bytes = 0;
  sweeper_.SweepNow();
  SetProcessCacheLimit(0);
  const Stats stats = pool.GetStats();
  EXPECT_EQ(stats.over_budget_blocks, 2u);
  EXPECT_EQ(stats.over_budget_bytes, 2 * (sizeof(Buffer) + kMiB));
  EXPECT_EQ(Buffer::destroyed_bytes.load(), stats.over_budget_bytes);
  EXPECT_EQ(stats.cached_blocks(), 20u);
  EXPECT_EQ(stats.cached_bytes(), total - stats.over_budget_bytes);
}

// Many threads Get, grow and Put buffers while sweeps run; then what the pool says it caches
// is exactly what Clear() destroys.
TEST_P(BufferPoolTest, TheCountIsExactAfterConcurrentUse) {
  Options options = PoolOptions();
  options.max_object_bytes = 48 * 1024;
  options.max_cached_bytes = 4 * kMiB;
  std::atomic<int> made{0};
  Pool<Buffer> pool(
      [&made] {
        made.fetch_add(1);
        return std::make_unique<Buffer>();
      },
      [](Buffer& b) { b.data.clear(); }, options);
  std::atomic<bool> stop{false};
  std::thread sweeper([&] {
    while (!stop.load()) {
      sweeper_.SweepNow();
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      uint64_t x = 0x9e3779b97f4a7c15u * (t + 1);
      for (int i = 0; i < 20000; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        auto h = pool.Get();
        // Buffers grow with every use until they pass max_object_bytes; some shrink.
        h->data.reserve(h->data.capacity() + x % 8192);
        h->data.resize(x % 64);
        if (x % 7 == 0) h->data.shrink_to_fit();
      }
    });
  }
  for (auto& t : threads) t.join();
  stop = true;
  sweeper.join();
  const Stats stats = pool.GetStats();
  EXPECT_GT(stats.oversized_objects, 0u);
  Buffer::destroyed_bytes = 0;
  pool.Clear();
  EXPECT_EQ(Buffer::destroyed_bytes.load(), stats.cached_bytes());
  EXPECT_EQ(pool.GetStats().cached_bytes(), 0u);
  EXPECT_EQ(pool.GetStats().cached_blocks(), 0u);
}

INSTANTIATE_TEST_SUITE_P(DebugChecks, BufferPoolTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "On" : "Off";
                         });

}  // namespace
}  // namespace syncpool
