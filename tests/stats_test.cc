// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of Stats: the derived totals, DebugString() and ToString().

#include "syncpool/stats.h"

#include <string>

#include "gtest/gtest.h"

namespace syncpool {
namespace {

Stats Sample() {
  Stats s;
  s.label = "PoolResource \"sample\"";
  s.hits = 1;
  s.misses = 2;
  s.grows = 3;
  s.spills = 4;
  s.shared_moves = 18;
  s.direct = 5;
  s.refilled = 19;
  s.primary_blocks = 6;
  s.primary_bytes = 700;
  s.victim_blocks = 8;
  s.victim_bytes = 900;
  s.swept_blocks = 10;
  s.swept_bytes = 1100;
  s.over_budget_blocks = 13;
  s.over_budget_bytes = 1400;
  s.pressure_blocks = 15;
  s.pressure_bytes = 1600;
  s.oversized_objects = 22;
  s.oversized_bytes = 2300;
  s.discarded_bytes = 17;
  s.span_bytes = 24;
  s.span_block_bytes = 27;
  s.span_free_bytes = 25;
  s.span_released_bytes = 26;
  s.upstream_bytes = 28;
  s.in_use_bytes = 29;
  s.peak_upstream_bytes = 31;
  s.epochs = 12;
  s.caches = 20;
  s.max_cache_bytes = 2100;
  s.reserved_bytes = 30;
  s.classes = {ClassStats{.block_bytes = 16, .hits = 32, .cached_blocks = 33},
               ClassStats{.block_bytes = 32},  // Unused: not listed.
               ClassStats{.block_bytes = 48, .hits = 34, .cached_blocks = 35, .span_bytes = 36,
                          .span_free_blocks = 37, .in_use_blocks = 38}};
  s.mode = "per-thread";
  s.mode_reason = "SYNCPOOL_RSEQ=0";
  return s;
}

TEST(StatsTest, CachedIsBothGenerations) {
  const Stats s = Sample();
  EXPECT_EQ(s.cached_blocks(), 14u);
  EXPECT_EQ(s.cached_bytes(), 1600u);
  EXPECT_EQ(Stats().cached_blocks(), 0u);
}

TEST(StatsTest, ToStringNamesEveryField) {
  EXPECT_EQ(Sample().ToString(),
            "label=\"PoolResource \\\"sample\\\"\" hits=1 misses=2 grows=3 spills=4 shared_moves=18 direct=5 refilled=19 "
            "primary_blocks=6 primary_bytes=700 victim_blocks=8 victim_bytes=900 swept_blocks=10 "
            "swept_bytes=1100 "
            "over_budget_blocks=13 over_budget_bytes=1400 pressure_blocks=15 "
            "pressure_bytes=1600 oversized_objects=22 oversized_bytes=2300 discarded_bytes=17 span_bytes=24 "
            "span_block_bytes=27 span_free_bytes=25 span_released_bytes=26 upstream_bytes=28 "
            "peak_upstream_bytes=31 in_use_bytes=29 epochs=12 caches=20 max_cache_bytes=2100 reserved_bytes=30 "
            "mode=\"per-thread\" mode_reason=\"SYNCPOOL_RSEQ=0\"");
}

TEST(StatsTest, DebugStringSaysWhatIsCachedAndWhyBlocksLeft) {
  EXPECT_EQ(Sample().DebugString(),
            "PoolResource \"sample\"\n"
            "cached: 14 blocks, 1600 bytes (primary 6 blocks, 700 bytes; victim 8 blocks, "
            "900 bytes)\n"
            "gets: 1 from the caches, 2 misses (19 more blocks refilled with them); per-CPU "
            "capacities grew 3 times; 5 requests "
            "passed straight upstream; 18 blocks moved to the shared layer\n"
            "left the caches: 1 reused, 10 swept (1100 bytes), 13 over budget (1400 bytes), 15 "
            "under memory pressure (1600 bytes), 4 spilled from full caches, 22 oversized "
            "(2300 bytes)\n"
            "epochs: 12; pages given back to the system: 17 bytes\n"
            "spans: 24 bytes held, 27 bytes of blocks in them, 25 of them free; 26 bytes given back\n"
            "upstream: 28 bytes held (at most 31 at once), 29 bytes of them in use\n"
            "caches: per-thread (SYNCPOOL_RSEQ=0): 20, the largest holding 2100 bytes; 30 bytes of "
            "address space reserved\n"
            "classes used (block size: hits, cached blocks; spans):\n"
            "  16: 32, 33\n"
            "  48: 34, 35; 36 bytes of spans, 37 blocks free, 38 in use\n");
}

}  // namespace
}  // namespace syncpool
