// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of what the measuring tools share: FlagParser (flags.h) accepts both spellings of a
// value, switches, ranges, and refuses what it does not know; Histogram (util/histogram.h)
// puts every value in the bucket whose range holds it, reads percentiles within a bucket's
// width, and its coordinated-omission correction adds the samples a stall stood for.

#include <cstdint>
#include <string>
#include <vector>

#include "bench/flags.h"
#include "bench/util/histogram.h"
#include "gtest/gtest.h"

namespace syncpool {
namespace bench {
namespace {

// argv for FlagParser::Parse(), "tool" first.
class Args {
 public:
  explicit Args(std::vector<std::string> args) : args_(std::move(args)) {
    argv_.push_back(tool_.data());
    for (std::string& a : args_) argv_.push_back(a.data());
  }
  int argc() const { return static_cast<int>(argv_.size()); }
  char** argv() { return argv_.data(); }

 private:
  std::string tool_ = "tool";
  std::vector<std::string> args_;
  std::vector<char*> argv_;
};

struct ToolFlags {
  int threads = 4;
  double seconds = 3;
  std::string csv;
  bool verbose = false;
};

bool Parse(std::vector<std::string> args, ToolFlags* flags) {
  FlagParser parser("tool");
  parser.Int("threads", 1, 64, &flags->threads);
  parser.Double("seconds", 0.1, 600, &flags->seconds);
  parser.String("csv", &flags->csv);
  parser.Switch("verbose", &flags->verbose);
  Args a(std::move(args));
  return parser.Parse(a.argc(), a.argv());
}

TEST(FlagParserTest, TakesBothSpellingsAndSwitches) {
  ToolFlags flags;
  ASSERT_TRUE(Parse({"--threads=8", "--seconds", "0.5", "--verbose", "--csv=a.csv"}, &flags));
  EXPECT_EQ(flags.threads, 8);
  EXPECT_DOUBLE_EQ(flags.seconds, 0.5);
  EXPECT_TRUE(flags.verbose);
  EXPECT_EQ(flags.csv, "a.csv");
  ToolFlags defaults;
  ASSERT_TRUE(Parse({}, &defaults));  // Flags not given keep their defaults.
  EXPECT_EQ(defaults.threads, 4);
  EXPECT_FALSE(defaults.verbose);
}

TEST(FlagParserTest, RefusesWhatItDoesNotKnowOrAccept) {
  ToolFlags flags;
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(Parse({"--threads=65"}, &flags));  // Out of range.
  EXPECT_FALSE(Parse({"--threads=4x"}, &flags));
  EXPECT_FALSE(Parse({"--seconds=nan"}, &flags));
  EXPECT_FALSE(Parse({"--csv="}, &flags));         // Empty.
  EXPECT_FALSE(Parse({"--threads"}, &flags));      // No value.
  EXPECT_FALSE(Parse({"--verbose=1"}, &flags));    // A switch takes none.
  EXPECT_FALSE(Parse({"--bogus=1"}, &flags));
  EXPECT_FALSE(Parse({"stray"}, &flags));
  EXPECT_FALSE(Parse({"--help"}, &flags));
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("tool: invalid value \"65\" for --threads"), std::string::npos) << err;
  EXPECT_NE(err.find("tool: --threads needs a value"), std::string::npos) << err;
  EXPECT_NE(err.find("tool: unknown flag --bogus"), std::string::npos) << err;
  EXPECT_NE(err.find("tool: unexpected argument \"stray\""), std::string::npos) << err;
  EXPECT_EQ(flags.threads, 4);  // Nothing invalid was stored.
}

TEST(FlagParserTest, SplitCommasSkipsEmptyItems) {
  EXPECT_EQ(SplitCommas("a,,b,"), std::vector<std::string>({"a", "b"}));
  EXPECT_TRUE(SplitCommas("").empty());
}

TEST(HistogramTest, EveryValueLiesInItsBucket) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{2047}, uint64_t{2048}, uint64_t{2049},
                     uint64_t{5000}, uint64_t{123456789}, uint64_t{1} << 40}) {
    const size_t i = Histogram::Index(v);
    EXPECT_LE(Histogram::Lower(i), v) << v;
    EXPECT_GE(Histogram::Upper(i), v) << v;
    // The width is at most 1/1024 of the value: 0.1 % above 2048, exact below.
    EXPECT_LE(Histogram::Width(i) * Histogram::kSub, std::max<uint64_t>(v, 2 * Histogram::kSub));
  }
  EXPECT_EQ(Histogram::Width(Histogram::Index(2047)), 1u);
}

TEST(HistogramTest, PercentilesOfAKnownDistribution) {
  Histogram h;
  EXPECT_EQ(h.Percentile(0.5), 0u);  // Empty.
  for (uint64_t v = 1; v <= 1000; ++v) h.Record(v);
  h.Record(1'000'000);
  EXPECT_EQ(h.Total(), 1001u);
  EXPECT_EQ(h.Percentile(0.5), 501u);  // Exact below 2048.
  EXPECT_EQ(h.Percentile(0.999), 1000u);
  EXPECT_EQ(h.Percentile(1.0), 1'000'000u);
  EXPECT_EQ(h.max(), 1'000'000u);
  uint64_t above = 0;
  h.SumAbove(2000, &above);
  EXPECT_EQ(above, 1u);
}

TEST(HistogramTest, CorrectionAddsTheSamplesAStallStoodFor) {
  Histogram h;
  for (int i = 0; i < 100; ++i) h.Record(10);
  h.Record(1000);  // A stall of 100 intervals of 10.
  Histogram corrected;
  h.AddCorrected(/*interval=*/10, &corrected);
  // The stall stands for the requests that would have arrived during it: 990, 980, ... 10.
  EXPECT_EQ(corrected.Total(), h.Total() + 99);
  EXPECT_EQ(corrected.max(), 1000u);
  EXPECT_GT(corrected.Percentile(0.9), h.Percentile(0.9));
}

}  // namespace
}  // namespace bench
}  // namespace syncpool
