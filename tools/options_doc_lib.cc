// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "tools/options_doc.h"

#include "src/option_table.h"

namespace syncpool {
namespace tools {

std::string OptionsMarkdown() {
  std::string out =
      "| variable | sets | default | accepts | what it does |\n"
      "| --- | --- | --- | --- | --- |\n";
  for (const internal::OptionSpec& spec : internal::kOptionTable) {
    std::string accepts = internal::OptionRangeText(spec);
    for (size_t at = 0; (at = accepts.find('|', at)) != std::string::npos; at += 2) {
      accepts.replace(at, 1, "\\|");
    }
    // A setting of the code in code type; "the process" as words.
    const std::string sets = std::string(spec.sets).find_first_of(":(") != std::string::npos
                                 ? "`" + std::string(spec.sets) + "`"
                                 : std::string(spec.sets);
    out += "| `" + std::string(spec.variable) + "` | " + sets + " | " +
           internal::OptionDefaultText(spec) + " | " + accepts + " | " + spec.doc + " |\n";
  }
  return out;
}

std::optional<std::string> WithTable(const std::string& text, const std::string& table) {
  const std::string begin = std::string(kBeginMarker) + "\n";
  const size_t b = text.find(begin);
  if (b == std::string::npos) return std::nullopt;
  const size_t e = text.find(kEndMarker, b + begin.size());
  if (e == std::string::npos) return std::nullopt;
  return text.substr(0, b + begin.size()) + table + text.substr(e);
}

}  // namespace tools
}  // namespace syncpool
