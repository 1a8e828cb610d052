// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The documentation's table of SYNCPOOL_* variables, written from the one table
// (src/option_table.h): README.md and docs/design.md each hold it between two
// marker lines. options_doc.cc rewrites it there; //tools:options_doc_test fails when it
// differs.

#ifndef SYNCPOOL_TOOLS_OPTIONS_DOC_H_
#define SYNCPOOL_TOOLS_OPTIONS_DOC_H_

#include <optional>
#include <string>

namespace syncpool {
namespace tools {

inline constexpr char kBeginMarker[] =
    "<!-- The table of SYNCPOOL_* variables, written by `bazel run //tools:options_doc` from "
    "src/options.cc: do not edit by hand. -->";
inline constexpr char kEndMarker[] = "<!-- End of the table of SYNCPOOL_* variables. -->";

// The table, in Markdown, without the markers.
std::string OptionsMarkdown();

// `text` with what lies between the marker lines replaced by `table`; nullopt when `text`
// does not hold both markers, in order.
std::optional<std::string> WithTable(const std::string& text, const std::string& table);

}  // namespace tools
}  // namespace syncpool

#endif  // SYNCPOOL_TOOLS_OPTIONS_DOC_H_
