// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Rewrites the table of SYNCPOOL_* variables in the given Markdown files (paths relative to
// the workspace) from the one table in src/options.cc:
//   bazel run //tools:options_doc -- README.md docs/design.md

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tools/options_doc.h"

int main(int argc, char** argv) {
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  const std::string root = workspace != nullptr ? std::string(workspace) + "/" : "";
  const std::string table = syncpool::tools::OptionsMarkdown();
  int failed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string path = root + argv[i];
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    const auto updated = syncpool::tools::WithTable(text.str(), table);
    if (!in || !updated) {
      std::fprintf(stderr, "options_doc: %s: cannot read it, or it lacks the marker lines\n",
                   path.c_str());
      failed = 1;
      continue;
    }
    std::ofstream(path) << *updated;
    std::printf("options_doc: wrote the table in %s\n", path.c_str());
  }
  return failed;
}
