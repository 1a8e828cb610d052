// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of Stats: the derived totals and DebugString().

#include "syncpool/stats.h"

#include <string>

#include "gtest/gtest.h"

namespace syncpool {
namespace {

Stats Sample() {
  Stats s;
  s.hits = 1;
  s.misses = 2;
  s.steals = 3;
  s.spills = 4;
  s.direct = 5;
  s.primary_blocks = 6;
  s.primary_bytes = 700;
  s.victim_blocks = 8;
  s.victim_bytes = 900;
  s.swept_blocks = 10;
  s.swept_bytes = 1100;
  s.epochs = 12;
  return s;
}

TEST(StatsTest, CachedIsBothGenerations) {
  const Stats s = Sample();
  EXPECT_EQ(s.cached_blocks(), 14u);
  EXPECT_EQ(s.cached_bytes(), 1600u);
  EXPECT_EQ(Stats().cached_blocks(), 0u);
}

TEST(StatsTest, DebugStringNamesEveryField) {
  EXPECT_EQ(Sample().DebugString(),
            "hits=1 misses=2 steals=3 spills=4 direct=5 primary_blocks=6 primary_bytes=700 "
            "victim_blocks=8 victim_bytes=900 swept_blocks=10 swept_bytes=1100 epochs=12");
}

}  // namespace
}  // namespace syncpool
