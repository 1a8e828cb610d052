// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The tables of SYNCPOOL_* variables in README.md and docs/design.md are the one table of
// src/options.cc, and that table holds what the library reads.

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "gtest/gtest.h"
#include "src/option_table.h"
#include "syncpool/internal/size_class.h"
#include "syncpool/options.h"
#include "tools/options_doc.h"

namespace syncpool::tools {
namespace {

std::string ReadRunfile(const std::string& path) {
  const char* dir = std::getenv("TEST_SRCDIR");
  std::ifstream in(std::string(dir != nullptr ? dir : ".") + "/syncpool/" + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class DocsTableTest : public testing::TestWithParam<const char*> {};

TEST_P(DocsTableTest, HoldsTheTable) {
  const std::string text = ReadRunfile(GetParam());
  ASSERT_FALSE(text.empty()) << GetParam();
  const auto expected = WithTable(text, OptionsMarkdown());
  ASSERT_TRUE(expected.has_value()) << GetParam() << " lacks the marker lines";
  EXPECT_EQ(text, *expected) << GetParam()
                             << " differs from the table in src/options.cc: run\n"
                                "  bazel run //tools:options_doc -- README.md docs/design.md";
}

INSTANTIATE_TEST_SUITE_P(Docs, DocsTableTest, testing::Values("README.md", "docs/design.md"));

TEST(OptionsMarkdownTest, OneRowPerVariableWithItsDefault) {
  const std::string table = OptionsMarkdown();
  for (const internal::OptionSpec& spec : internal::kOptionTable) {
    const size_t at = table.find(std::string("| `") + spec.variable + "` | ");
    ASSERT_NE(at, std::string::npos) << spec.variable;
    const std::string row = table.substr(at, table.find('\n', at) - at);
    EXPECT_NE(row.find(std::string(" | ") + internal::OptionDefaultText(spec) + " | "),
              std::string::npos)
        << row;
    EXPECT_NE(row.find(spec.sets), std::string::npos) << row;
  }
}

TEST(WithTableTest, ReplacesOnlyBetweenTheMarkers) {
  const std::string text =
      std::string("before\n") + kBeginMarker + "\nold\n" + kEndMarker + "\nafter\n";
  EXPECT_EQ(*WithTable(text, "new\n"),
            std::string("before\n") + kBeginMarker + "\nnew\n" + kEndMarker + "\nafter\n");
  EXPECT_FALSE(WithTable("no markers\n", "new\n").has_value());
  EXPECT_FALSE(WithTable(std::string(kEndMarker) + "\n" + kBeginMarker + "\n", "x").has_value());
}

// What the table says is what the library reads: a value outside a row's range is refused
// and the default kept; one inside is taken.
TEST(EnvOptionTest, ReadsTheTablesRanges) {
  const internal::OptionSpec& spec = internal::kOptionTable[internal::kOptMaxBlockSize];
  ASSERT_EQ(setenv(spec.variable, std::to_string(spec.max + 1).c_str(), 1), 0);
  EXPECT_EQ(internal::EnvOption(internal::kOptMaxBlockSize), spec.fallback);
  ASSERT_EQ(setenv(spec.variable, std::to_string(spec.max).c_str(), 1), 0);
  EXPECT_EQ(internal::EnvOption(internal::kOptMaxBlockSize), spec.max);
  ASSERT_EQ(setenv("SYNCPOOL_MODE", "perthread", 1), 0);
  EXPECT_EQ(internal::EnvOption(internal::kOptMode), 2u);
  ASSERT_EQ(setenv("SYNCPOOL_MODE", "sideways", 1), 0);
  EXPECT_EQ(internal::EnvOption(internal::kOptMode), 0u);
  unsetenv("SYNCPOOL_MODE");
  unsetenv(spec.variable);
}

TEST(ValidateOptionsTest, RefusesAFieldOutsideItsRange) {
  Options options;
  EXPECT_NO_THROW(internal::ValidateOptions(options, "test"));
  options.max_blocks_per_class = 0;
  try {
    internal::ValidateOptions(options, "test");
    ADD_FAILURE() << "max_blocks_per_class = 0 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Options::max_blocks_per_class"), std::string::npos)
        << e.what();
  }
  options = Options();
  options.max_block_size = internal::kMaxClassSize + 1;
  EXPECT_THROW(internal::ValidateOptions(options, "test"), std::invalid_argument);
}

}  // namespace
}  // namespace syncpool::tools
