// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of PoolAllocator<T>: its traits pinned at compile time, equality, and standard and
// Abseil containers over PoolResources whose upstream is a TrackingResource, so every block
// is accounted for and any block given back to the wrong resource is flagged.

#include "syncpool/pool_allocator.h"

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "gtest/gtest.h"
#include "syncpool/sweeper.h"
#include "pattern.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::IsAligned;
using ::syncpool::testing::TrackingResource;

// The allocator requirements a container relies on.
template <typename A>
concept Allocator = requires(A a, const A ca, typename A::value_type* p, size_t n) {
  typename A::value_type;
  { a.allocate(n) } -> std::same_as<typename A::value_type*>;
  a.deallocate(p, n);
  { ca == ca } -> std::convertible_to<bool>;
  { ca != ca } -> std::convertible_to<bool>;
  { ca.select_on_container_copy_construction() } -> std::same_as<A>;
  requires std::is_nothrow_copy_constructible_v<A>;
  requires std::is_nothrow_move_constructible_v<A>;
  requires std::is_nothrow_copy_assignable_v<A>;
};

using IntAllocator = PoolAllocator<int>;
using Traits = std::allocator_traits<IntAllocator>;
static_assert(Allocator<IntAllocator>);
static_assert(Allocator<PoolAllocator<std::string>>);
static_assert(Traits::propagate_on_container_copy_assignment::value);
static_assert(Traits::propagate_on_container_move_assignment::value);
static_assert(Traits::propagate_on_container_swap::value);
static_assert(!Traits::is_always_equal::value);
static_assert(std::is_same_v<Traits::value_type, int>);
static_assert(std::is_same_v<Traits::pointer, int*>);
static_assert(std::is_same_v<Traits::size_type, size_t>);
static_assert(std::is_same_v<Traits::rebind_alloc<double>, PoolAllocator<double>>);
// Converting from another value type is implicit; from a resource it is explicit.
static_assert(std::is_nothrow_convertible_v<PoolAllocator<double>, IntAllocator>);
static_assert(!std::is_convertible_v<PoolResource*, IntAllocator>);
static_assert(std::is_nothrow_default_constructible_v<IntAllocator>);
static_assert(noexcept(std::declval<IntAllocator&>() == std::declval<PoolAllocator<char>&>()));
static_assert(sizeof(IntAllocator) == sizeof(void*));

template <typename T>
using PoolVector = std::vector<T, PoolAllocator<T>>;
using PoolString = std::basic_string<char, std::char_traits<char>, PoolAllocator<char>>;

// What a resource has served: every allocation is a hit, a miss or a direct request.
uint64_t Served(const PoolResource& r) {
  const Stats s = r.GetStats();
  return s.hits + s.misses + s.direct;
}

// Two resources over two tracking upstreams, so a block returned to the wrong resource is
// flagged by the other's TrackingResource. The resources are destroyed before TearDown()
// checks that each upstream got everything back.
class PoolAllocatorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    a_.reset();
    b_.reset();
    for (const TrackingResource* upstream : {&upstream_a_, &upstream_b_}) {
      EXPECT_EQ(upstream->live_bytes(), 0u);
      EXPECT_TRUE(upstream->errors().empty()) << upstream->errors().front();
    }
  }

  // Debug checks on: a block deallocated through the wrong resource aborts.
  Options MakeOptions() { return Options{.sweeper = &sweeper_, .debug_checks = true}; }

  Sweeper sweeper_{Sweeper::Options::Manual()};
  TrackingResource upstream_a_;
  TrackingResource upstream_b_;
  std::optional<PoolResource> a_{std::in_place, MakeOptions(), &upstream_a_};
  std::optional<PoolResource> b_{std::in_place, MakeOptions(), &upstream_b_};
};

TEST_F(PoolAllocatorTest, EqualWhenTheResourceIsTheSame) {
  const IntAllocator on_a(&*a_);
  const IntAllocator also_on_a(&*a_);
  const IntAllocator on_b(&*b_);
  EXPECT_EQ(on_a.resource(), &*a_);
  EXPECT_TRUE(on_a == also_on_a);
  EXPECT_FALSE(on_a != also_on_a);
  EXPECT_FALSE(on_a == on_b);
  EXPECT_TRUE(on_a != on_b);

  // Rebinding keeps the resource; memory from one is deallocatable by the other.
  const PoolAllocator<double> rebound(on_a);
  EXPECT_TRUE(rebound == on_a);
  EXPECT_TRUE(on_a == rebound);
  EXPECT_FALSE(rebound == on_b);
  const IntAllocator back(rebound);
  EXPECT_EQ(back, on_a);
  IntAllocator mutable_back = back;
  int* p = mutable_back.allocate(10);
  IntAllocator(rebound).deallocate(p, 10);
}

TEST_F(PoolAllocatorTest, DefaultConstructedUsesTheDefaultResource) {
  EXPECT_EQ(IntAllocator().resource(), &PoolResource::Default());
  EXPECT_EQ(PoolAllocator<std::string>().resource(), &PoolResource::Default());
  const uint64_t before = Served(PoolResource::Default());
  PoolVector<int> v(100, 1);
  EXPECT_GT(Served(PoolResource::Default()), before);
  EXPECT_EQ(v.get_allocator().resource(), &PoolResource::Default());
}

TEST_F(PoolAllocatorTest, HugeCountThrowsBadArrayNewLength) {
  IntAllocator alloc(&*a_);
  const size_t too_many = std::numeric_limits<size_t>::max() / sizeof(int) + 1;
  EXPECT_THROW(alloc.allocate(too_many), std::bad_array_new_length);
  EXPECT_THROW(alloc.allocate(std::numeric_limits<size_t>::max()), std::bad_array_new_length);
  EXPECT_EQ(Served(*a_), 0u);
  EXPECT_EQ(upstream_a_.allocations(), 0u);
}

TEST_F(PoolAllocatorTest, UpstreamFailurePropagatesThroughAContainer) {
  PoolVector<int> v{IntAllocator(&*a_)};
  v.assign(10, 3);
  upstream_a_.FailAfter(0);
  EXPECT_THROW(v.reserve(1000), std::bad_alloc);
  EXPECT_EQ(v, PoolVector<int>(10, 3));  // Strong guarantee: unchanged.
  v.reserve(1000);
  EXPECT_GE(v.capacity(), 1000u);
}

TEST_F(PoolAllocatorTest, Vector) {
  {
    PoolVector<int> v{IntAllocator(&*a_)};
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    EXPECT_GT(Served(*a_), 0u);
    int64_t sum = 0;
    for (const int x : v) sum += x;
    EXPECT_EQ(sum, 999 * 1000 / 2);
  }
  EXPECT_GT(a_->GetStats().cached_blocks(), 0u);
}

TEST_F(PoolAllocatorTest, String) {
  PoolString s{PoolAllocator<char>(&*a_)};
  s.assign(200, 'x');  // Well past the small-string buffer.
  s += std::string(300, 'y');
  EXPECT_GT(Served(*a_), 0u);
  EXPECT_EQ(s.size(), 500u);
  EXPECT_EQ(s.substr(198, 4), "xxyy");
}

TEST_F(PoolAllocatorTest, MapAndUnorderedMap) {
  using Value = std::pair<const int, PoolString>;
  std::map<int, PoolString, std::less<int>, PoolAllocator<Value>> ordered{
      PoolAllocator<Value>(&*a_)};
  std::unordered_map<int, int, std::hash<int>, std::equal_to<int>,
                     PoolAllocator<std::pair<const int, int>>>
      unordered{PoolAllocator<std::pair<const int, int>>(&*b_)};
  auto text = [&](int i) {
    return PoolString(100, static_cast<char>('a' + i % 26), PoolAllocator<char>(&*a_));
  };
  for (int i = 0; i < 500; ++i) {
    ordered.emplace(i, text(i));
    unordered[i] = i * i;
  }
  EXPECT_GE(Served(*a_), 1000u);  // A node and a string each.
  EXPECT_GE(Served(*b_), 500u);
  for (int i = 0; i < 500; i += 7) {
    EXPECT_EQ(ordered.at(i), text(i));
    EXPECT_EQ(unordered.at(i), i * i);
  }
  ordered.erase(ordered.begin(), ordered.find(250));
  EXPECT_EQ(ordered.size(), 250u);
  EXPECT_EQ(ordered.begin()->second.get_allocator().resource(), &*a_);
}

TEST_F(PoolAllocatorTest, AbslFlatHashMap) {
  using Alloc = PoolAllocator<std::pair<const int, int>>;
  absl::flat_hash_map<int, int, absl::Hash<int>, std::equal_to<int>, Alloc> m{Alloc(&*a_)};
  for (int i = 0; i < 1000; ++i) m[i] = -i;
  EXPECT_GT(Served(*a_), 0u);
  EXPECT_EQ(m.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(m.at(i), -i);
}

TEST_F(PoolAllocatorTest, AbslInlinedVectorSpillsToThePool) {
  absl::InlinedVector<int, 4, IntAllocator> v{IntAllocator(&*a_)};
  for (int i = 0; i < 4; ++i) v.push_back(i);
  EXPECT_EQ(Served(*a_), 0u);  // Still inline.
  for (int i = 4; i < 100; ++i) v.push_back(i);
  EXPECT_GT(Served(*a_), 0u);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(v[i], i);
  EXPECT_TRUE(v.get_allocator() == IntAllocator(&*a_));
}

TEST_F(PoolAllocatorTest, CopyConstructionKeepsTheResource) {
  const PoolVector<int> original(100, 5, IntAllocator(&*a_));
  const PoolVector<int> copy(original);
  EXPECT_EQ(copy.get_allocator().resource(), &*a_);
  EXPECT_EQ(copy, original);
  const PoolString s(300, 'z', PoolAllocator<char>(&*b_));
  const PoolString s_copy(s);
  EXPECT_EQ(s_copy.get_allocator().resource(), &*b_);
}

TEST_F(PoolAllocatorTest, CopyAssignmentPropagatesTheResource) {
  PoolVector<int> on_a(100, 1, IntAllocator(&*a_));
  PoolVector<int> on_b(1000, 2, IntAllocator(&*b_));
  on_b = on_a;
  EXPECT_EQ(on_b.get_allocator().resource(), &*a_);
  EXPECT_EQ(on_b, PoolVector<int>(100, 1));

  PoolString s_a(300, 'a', PoolAllocator<char>(&*a_));
  PoolString s_b(400, 'b', PoolAllocator<char>(&*b_));
  s_a = s_b;
  EXPECT_EQ(s_a.get_allocator().resource(), &*b_);
  EXPECT_EQ(s_a, s_b);
}

TEST_F(PoolAllocatorTest, MoveAssignmentPropagatesTheResource) {
  PoolVector<int> on_a(100, 1, IntAllocator(&*a_));
  PoolVector<int> on_b(1000, 2, IntAllocator(&*b_));
  const int* data = on_a.data();
  on_b = std::move(on_a);
  EXPECT_EQ(on_b.get_allocator().resource(), &*a_);
  EXPECT_EQ(on_b.data(), data);  // The block itself moved: no element-wise copy.
  EXPECT_EQ(on_b.size(), 100u);

  using Map = std::map<int, int, std::less<int>, PoolAllocator<std::pair<const int, int>>>;
  Map m_a({{1, 1}, {2, 2}}, PoolAllocator<std::pair<const int, int>>(&*a_));
  Map m_b({{3, 3}}, PoolAllocator<std::pair<const int, int>>(&*b_));
  m_b = std::move(m_a);
  EXPECT_EQ(m_b.get_allocator().resource(), &*a_);
  EXPECT_EQ(m_b.size(), 2u);
}

TEST_F(PoolAllocatorTest, SwapPropagatesTheResource) {
  PoolVector<int> on_a(100, 1, IntAllocator(&*a_));
  PoolVector<int> on_b(1000, 2, IntAllocator(&*b_));
  std::swap(on_a, on_b);
  EXPECT_EQ(on_a.get_allocator().resource(), &*b_);
  EXPECT_EQ(on_b.get_allocator().resource(), &*a_);
  EXPECT_EQ(on_a.size(), 1000u);
  EXPECT_EQ(on_b.size(), 100u);

  using Alloc = PoolAllocator<std::pair<const int, int>>;
  absl::flat_hash_map<int, int, absl::Hash<int>, std::equal_to<int>, Alloc> h_a{Alloc(&*a_)};
  absl::flat_hash_map<int, int, absl::Hash<int>, std::equal_to<int>, Alloc> h_b{Alloc(&*b_)};
  for (int i = 0; i < 50; ++i) h_a[i] = i;
  h_b[-1] = -1;
  h_a.swap(h_b);
  EXPECT_EQ(h_a.get_allocator().resource(), &*b_);
  EXPECT_EQ(h_b.get_allocator().resource(), &*a_);
  EXPECT_EQ(h_b.size(), 50u);
}

struct alignas(64) CacheLine {
  char bytes[64];
};
struct alignas(128) TwoLines {
  char bytes[128];
};

TEST_F(PoolAllocatorTest, OverAlignedTypes) {
  PoolVector<CacheLine> lines(10, CacheLine{}, PoolAllocator<CacheLine>(&*a_));
  EXPECT_TRUE(IsAligned(lines.data(), 64));
  EXPECT_EQ(a_->GetStats().direct, 0u);  // 64 is pooled.
  EXPECT_GT(Served(*a_), 0u);

  std::list<TwoLines, PoolAllocator<TwoLines>> nodes{PoolAllocator<TwoLines>(&*b_)};
  for (int i = 0; i < 20; ++i) {
    nodes.emplace_back();
    EXPECT_TRUE(IsAligned(&nodes.back(), 128));
  }
  PoolVector<TwoLines> big(5, TwoLines{}, PoolAllocator<TwoLines>(&*b_));
  EXPECT_TRUE(IsAligned(big.data(), 128));
  EXPECT_EQ(b_->GetStats().direct, 21u);  // 128 goes upstream: every node and the vector.
}

}  // namespace
}  // namespace syncpool
