// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/util/csv.h
// -----------------------------------------------------------------------------
//
// What the benchmark tools write for charts: CSV files (a header line, then one line per row),
// which scripts/ turn into charts with gnuplot. And where a path given on the command line
// points under `bazel run`.

#ifndef SYNCPOOL_BENCH_UTIL_CSV_H_
#define SYNCPOOL_BENCH_UTIL_CSV_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace syncpool {
namespace bench {

// FromWorkingDirectory()
//
// `path`, relative to where the command was run: under `bazel run` the working directory is
// the runfiles tree, and BUILD_WORKING_DIRECTORY the directory bazel was run from.
inline std::string FromWorkingDirectory(const std::string& path) {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || dir == nullptr) return path;
  return std::string(dir) + "/" + path;
}

// WriteCsv()
//
// Writes `header` and then `rows` (each a line, its fields already joined by commas) to
// `path`. Returns false after a message on stderr, prefixed with `tool`, when it cannot.
inline bool WriteCsv(const char* tool, const std::string& path, const std::string& header,
                     const std::vector<std::string>& rows) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot write %s: ", tool, path.c_str());
    std::perror(nullptr);
    return false;
  }
  std::fprintf(f, "%s\n", header.c_str());
  for (const std::string& row : rows) std::fprintf(f, "%s\n", row.c_str());
  if (std::fclose(f) != 0) {
    std::fprintf(stderr, "%s: cannot write %s\n", tool, path.c_str());
    return false;
  }
  return true;
}

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_UTIL_CSV_H_
