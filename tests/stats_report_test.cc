// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// SYNCPOOL_STATS=1: at exit, every resource still alive prints its statistics on stderr, and
// every resource destroyed before prints those it had at its destruction.

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>

#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace {

TEST(StatsReportTest, EveryLiveResourcePrintsItsStatsAtExit) {
  EXPECT_EXIT(
      {
        setenv("SYNCPOOL_STATS", "1", 1);
        static Sweeper sweeper(Sweeper::Options::Manual());
        Options options;
        options.sweeper = &sweeper;
        options.name = "report_me";
        options.refill_bytes = 0;  // The one block allocated is the one cached.
        static PoolResource* resource = new PoolResource(options);  // Alive at exit.
        resource->deallocate(resource->allocate(100), 100);
        {
          options.name = "gone_before_exit";
          PoolResource gone(options);
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(0),
      "syncpool stats, PoolResource \"report_me\":\n  cached: 1 blocks, 112 bytes");
  EXPECT_EXIT(
      {
        setenv("SYNCPOOL_STATS", "1", 1);
        Options options;
        options.name = "gone_before_exit";
        options.refill_bytes = 0;
        {
          PoolResource gone(options);
          gone.deallocate(gone.allocate(100), 100);
        }
        std::fprintf(stderr, "end\n");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0),
      "^end\nsyncpool stats, PoolResource \"gone_before_exit\" \\(at its destruction\\):\n"
      "  cached: 1 blocks, 112 bytes");
}

}  // namespace
}  // namespace syncpool
