// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// SYNCPOOL_STATS=1: at exit, every resource still alive prints its statistics on stderr, and
// every resource destroyed before prints those it had at its destruction.

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

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

// Each variable is read, and warned about, once per process, and a misspelt SYNCPOOL_* name is
// reported once. The child's exit code counts the warnings: 10 per unknown-name line, 1 per
// SYNCPOOL_STATS line.
TEST(StatsReportTest, VariablesAreReadAndWarnedAboutOncePerProcess) {
  EXPECT_EXIT(
      {
        setenv("SYNCPOOL_MAXX_BLOCK_SIZE", "1", 1);
        setenv("SYNCPOOL_STATS", "maybe", 1);
        // stderr into a file (the death test captures it already).
        char path[] = "/tmp/syncpool_env_onceXXXXXX";
        const int fd = mkstemp(path);
        if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) std::exit(100);
        for (int i = 0; i < 3; ++i) {
          Options options;
          PoolResource r(options);
          r.deallocate(r.allocate(64), 64);
        }
        std::string err;
        char buffer[4096];
        lseek(fd, 0, SEEK_SET);
        for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) err.append(buffer, n);
        unlink(path);
        auto count = [&err](const std::string& what) {
          int n = 0;
          for (size_t at = err.find(what); at != std::string::npos; at = err.find(what, at + 1)) ++n;
          return n;
        };
        std::exit(10 * count("ignoring SYNCPOOL_MAXX_BLOCK_SIZE: not a variable syncpool reads") +
                  count("ignoring SYNCPOOL_STATS=\"maybe\""));
      },
      ::testing::ExitedWithCode(11), "");
}

}  // namespace
}  // namespace syncpool
