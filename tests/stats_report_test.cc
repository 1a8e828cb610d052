// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// SYNCPOOL_STATS=1: at exit, every resource still alive prints its statistics on stderr, and
// every resource destroyed before prints those it had at its destruction. LiveStats() and
// PrintStats(): every pool alive now, while the program runs. The statistics a pool keeps for
// them: its label, the peak of what it held upstream, each class's part.

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
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

// Whether `all` holds a Stats labelled `label`.
bool Lists(const std::vector<Stats>& all, const std::string& label) {
  return std::any_of(all.begin(), all.end(), [&](const Stats& s) { return s.label == label; });
}

TEST(LiveStatsTest, EveryLivePoolIsListedWithItsLabelUntilItIsDestroyed) {
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.name = "live_resource";
  auto resource = std::make_unique<PoolResource>(options);
  options.name = "live_pool";
  auto pool = std::make_unique<Pool<int>>([] { return std::make_unique<int>(7); }, nullptr,
                                          options);
  options.name.clear();
  PoolResource unnamed(options);
  EXPECT_EQ(resource->GetStats().label, "PoolResource \"live_resource\"");
  EXPECT_EQ(pool->GetStats().label, "Pool \"live_pool\"");
  EXPECT_EQ(unnamed.GetStats().label.rfind("PoolResource at 0x", 0), 0u)
      << unnamed.GetStats().label;
  EXPECT_EQ(PoolResource::Default().GetStats().label, "PoolResource \"default\"");
  EXPECT_EQ(resource->GetStats().DebugString().rfind("PoolResource \"live_resource\"\n", 0), 0u);

  std::vector<Stats> all = LiveStats();
  EXPECT_TRUE(Lists(all, "PoolResource \"live_resource\""));
  EXPECT_TRUE(Lists(all, "Pool \"live_pool\""));
  EXPECT_TRUE(Lists(all, unnamed.GetStats().label));

  // PrintStats(): the same, as text.
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  PrintStats(out);
  std::rewind(out);
  std::string text;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), out)) > 0;) text.append(buffer, n);
  std::fclose(out);
  EXPECT_NE(text.find("syncpool stats, PoolResource \"live_resource\":\n  cached: "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("syncpool stats, Pool \"live_pool\":\n  cached: "), std::string::npos);

  resource.reset();
  pool.reset();
  all = LiveStats();
  EXPECT_FALSE(Lists(all, "PoolResource \"live_resource\""));
  EXPECT_FALSE(Lists(all, "Pool \"live_pool\""));
  EXPECT_TRUE(Lists(all, unnamed.GetStats().label));
}

// The peak of what a resource held upstream stays after the blocks go back; each class
// counts its spans and the blocks in use from them.
TEST(LiveStatsTest, APeakOfUpstreamBytesAndAPartPerClass) {
  Sweeper sweeper(Sweeper::Options::Manual());
  Options options;
  options.sweeper = &sweeper;
  options.refill_bytes = 0;
  PoolResource resource(options);
  constexpr int kBlocks = 1000;
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(resource.allocate(100));
  void* large = resource.allocate(100000);
  const Stats busy = resource.GetStats();
  EXPECT_GE(busy.upstream_bytes, kBlocks * 100u + 100000u);
  EXPECT_EQ(busy.peak_upstream_bytes, busy.upstream_bytes);
  const auto cls = std::find_if(busy.classes.begin(), busy.classes.end(),
                                [](const ClassStats& c) { return c.block_bytes >= 100; });
  ASSERT_NE(cls, busy.classes.end());
  EXPECT_EQ(cls->in_use_blocks, uint64_t{kBlocks}) << busy.DebugString();
  EXPECT_GT(cls->span_bytes, 0u);
  EXPECT_EQ(cls->cached_blocks, 0u);
  for (const ClassStats& c : busy.classes) {
    if (&c != &*cls) {
      EXPECT_EQ(c.in_use_blocks, 0u) << c.block_bytes;
    }
  }

  for (void* b : blocks) resource.deallocate(b, 100);
  resource.deallocate(large, 100000);
  resource.release();
  const Stats idle = resource.GetStats();
  EXPECT_EQ(idle.upstream_bytes, 0u) << idle.DebugString();
  EXPECT_EQ(idle.peak_upstream_bytes, busy.peak_upstream_bytes);
  for (const ClassStats& c : idle.classes) EXPECT_EQ(c.in_use_blocks, 0u) << c.block_bytes;
}

}  // namespace
}  // namespace syncpool
