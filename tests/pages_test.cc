// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Pages discarded before blocks go upstream: DiscardInteriorPages() gives back the whole pages
// inside a block and keeps the rest, and a PoolResource discards the pages of large blocks
// (Options::discard_min_bytes) before it gives them back, whether swept or served directly.

#include "src/pages.h"

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::TrackingResource;

TEST(PagesTest, DiscardsWholeInteriorPagesAndKeepsTheRest) {
  const size_t page = internal::PageSize();
  const size_t length = 16 * page;
  void* mapping = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  auto* bytes = static_cast<unsigned char*>(mapping);
  std::memset(bytes, 0xAB, length);

  // A block starting 100 bytes into the second page, 10 pages long.
  unsigned char* p = bytes + page + 100;
  const size_t size = 10 * page;
  EXPECT_EQ(internal::DiscardInteriorPages(p, size), 9 * page);  // Pages 2 to 10.
  for (size_t i = 0; i < length; ++i) {
    const bool discarded = i >= 2 * page && i < 11 * page;
    ASSERT_EQ(bytes[i], discarded ? 0 : 0xAB) << "byte " << i;
  }
  // A page-aligned block keeps its first page (its first 64 bytes hold allocator links).
  std::memset(bytes, 0xAB, length);
  EXPECT_EQ(internal::DiscardInteriorPages(bytes, 4 * page), 3 * page);
  EXPECT_EQ(bytes[page - 1], 0xAB);
  EXPECT_EQ(bytes[page], 0);
  // Too small for a whole page: nothing.
  EXPECT_EQ(internal::DiscardInteriorPages(bytes + 8, page), 0u);
  EXPECT_EQ(internal::DiscardInteriorPages(bytes, 64), 0u);
  munmap(mapping, length);
}

TEST(PagesTest, ResourceDiscardsLargeBlocksBeforeGivingThemBack) {
  Sweeper sweeper(Sweeper::Options::Manual());
  TrackingResource upstream;
  Options options;
  options.sweeper = &sweeper;
  options.discard_min_bytes = 16 * 1024;
  options.debug_checks = false;
  {
    PoolResource r(options, &upstream);
    void* big = r.allocate(64 * 1024);
    void* small = r.allocate(1024);
    std::memset(big, 1, 64 * 1024);
    r.deallocate(big, 64 * 1024);
    r.deallocate(small, 1024);
    EXPECT_EQ(r.GetStats().discarded_bytes, 0u);  // Cached, not given back.
    r.Trim();
    const uint64_t discarded = r.GetStats().discarded_bytes;
    // The big block's pages, and those of the 64 KiB span the 1 KiB block came from (a span
    // goes upstream as a large block does, once all of its blocks are free).
    EXPECT_GE(discarded, 2 * (64u * 1024 - 2 * internal::PageSize()));
    EXPECT_LE(discarded, 2 * 64u * 1024);
    EXPECT_EQ(r.GetStats().span_bytes, 0u);
    EXPECT_EQ(upstream.live_blocks(), 0u);

    void* direct = r.allocate(512 * 1024);  // Above max_block_size: straight upstream.
    r.deallocate(direct, 512 * 1024);
    EXPECT_GE(r.GetStats().discarded_bytes, discarded + 500 * 1024);
  }
  options.discard_min_bytes = 0;  // Off.
  PoolResource r(options, &upstream);
  r.deallocate(r.allocate(64 * 1024), 64 * 1024);
  r.Trim();
  EXPECT_EQ(r.GetStats().discarded_bytes, 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
}

}  // namespace
}  // namespace syncpool
