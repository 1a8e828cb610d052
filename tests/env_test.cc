// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// SYNCPOOL_* environment variables as syncpool reads them (env.h): a bad or out-of-range value
// is reported on stderr, naming the variable, what it accepts and the default kept; a good one
// is taken; an unset one gives the default.

#include "src/env.h"

#include <stdlib.h>

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace syncpool {
namespace {

TEST(EnvTest, BadValuesAreReportedAndTheDefaultKept) {
  setenv("SYNCPOOL_TEST_INTEGER", "12x", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(internal::EnvInteger("SYNCPOOL_TEST_INTEGER", 7, 1, 100), 7u);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("ignoring SYNCPOOL_TEST_INTEGER=\"12x\""), std::string::npos) << err;
  EXPECT_NE(err.find("keeping 7"), std::string::npos) << err;

  setenv("SYNCPOOL_TEST_INTEGER", "101", 1);  // Out of range.
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(internal::EnvInteger("SYNCPOOL_TEST_INTEGER", 7, 1, 100), 7u);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("from 1 to 100"), std::string::npos) << err;

  setenv("SYNCPOOL_TEST_INTEGER", "42", 1);
  EXPECT_EQ(internal::EnvInteger("SYNCPOOL_TEST_INTEGER", 7, 1, 100), 42u);
  unsetenv("SYNCPOOL_TEST_INTEGER");
  EXPECT_EQ(internal::EnvInteger("SYNCPOOL_TEST_INTEGER", 7, 1, 100), 7u);

  setenv("SYNCPOOL_TEST_CHOICE", "lru", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(internal::EnvChoice("SYNCPOOL_TEST_CHOICE", 0, {{"working_set", 0}, {"victim", 1}}),
            0);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("one of: working_set, victim; keeping working_set"), std::string::npos)
      << err;
  setenv("SYNCPOOL_TEST_CHOICE", "victim", 1);
  EXPECT_EQ(internal::EnvChoice("SYNCPOOL_TEST_CHOICE", 0, {{"working_set", 0}, {"victim", 1}}),
            1);
  unsetenv("SYNCPOOL_TEST_CHOICE");

  setenv("SYNCPOOL_TEST_BOOL", "yes", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(internal::EnvBool("SYNCPOOL_TEST_BOOL", true));
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("ignoring SYNCPOOL_TEST_BOOL=\"yes\""), std::string::npos) << err;
  setenv("SYNCPOOL_TEST_BOOL", "off", 1);
  EXPECT_FALSE(internal::EnvBool("SYNCPOOL_TEST_BOOL", true));
  unsetenv("SYNCPOOL_TEST_BOOL");
}

// Sizes take a unit: K, KiB, M, MiB, G, GiB (as the docs print them).
TEST(EnvTest, SizesTakeUnits) {
  const struct {
    const char* text;
    uint64_t bytes;
  } kGood[] = {{"262144", 262144},     {"64k", 64 << 10},   {"64K", 64 << 10},
               {"256 KiB", 256 << 10}, {"1MiB", 1 << 20},   {"2M", 2 << 20},
               {"1G", uint64_t{1} << 30}, {"3GiB", uint64_t{3} << 30}};
  for (const auto& [text, bytes] : kGood) {
    setenv("SYNCPOOL_TEST_BYTES", text, 1);
    EXPECT_EQ(internal::EnvBytes("SYNCPOOL_TEST_BYTES", 7, 0, ~uint64_t{0}), bytes)
        << text;
  }
  for (const char* bad : {"1.5M", "64kb", "M", "-1K", "1T", "99999999999999999999G"}) {
    setenv("SYNCPOOL_TEST_BYTES", bad, 1);
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(internal::EnvBytes("SYNCPOOL_TEST_BYTES", 7, 0, ~uint64_t{0}), 7u) << bad;
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("K, KiB, M, MiB, G or GiB"), std::string::npos) << err;
  }
  setenv("SYNCPOOL_TEST_BYTES", "2M", 1);  // Out of range.
  EXPECT_EQ(internal::EnvBytes("SYNCPOOL_TEST_BYTES", 7, 0, 1 << 20), 7u);
  unsetenv("SYNCPOOL_TEST_BYTES");
}

}  // namespace
}  // namespace syncpool
