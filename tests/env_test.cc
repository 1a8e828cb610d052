// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// SYNCPOOL_* environment variables as syncpool reads them (env.h): a bad or out-of-range value
// is reported on stderr, naming the variable, what it accepts and the default kept; a good one
// is taken; an unset one gives the default.

#include "syncpool/internal/env.h"

#include <stdlib.h>

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

}  // namespace
}  // namespace syncpool
