// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Command-line flags of the benchmark tools (burst, sweep_latency): `--name=value` or
// `--name value`, and numbers checked against a range.

#ifndef SYNCPOOL_BENCH_FLAGS_H_
#define SYNCPOOL_BENCH_FLAGS_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace syncpool {
namespace bench {

// Parses a decimal integer in [low, high].
inline bool ParseLong(std::string_view text, long low, long high, long* out) {
  const std::string s(text);
  char* end = nullptr;
  const long value = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || value < low || value > high) return false;
  *out = value;
  return true;
}

inline bool ParseInt(std::string_view text, int low, int high, int* out) {
  long value = 0;
  if (!ParseLong(text, low, high, &value)) return false;
  *out = static_cast<int>(value);
  return true;
}

// Splits argv[*i], a flag with a value (`--name=value`, or `--name value`, which consumes
// argv[*i + 1]), into `name` and `value`. Returns false after a message on stderr naming
// `tool` when argv[*i] is not a flag or has no value.
inline bool SplitFlag(const char* tool, int argc, char** argv, int* i, std::string_view* name,
                      std::string_view* value) {
  std::string_view arg = argv[*i];
  if (arg.substr(0, 2) != "--") {
    std::fprintf(stderr, "%s: unexpected argument \"%s\"\n", tool, argv[*i]);
    return false;
  }
  arg.remove_prefix(2);
  *name = arg;
  if (const size_t eq = arg.find('='); eq != std::string_view::npos) {
    *name = arg.substr(0, eq);
    *value = arg.substr(eq + 1);
  } else if (*i + 1 < argc) {
    *value = argv[++*i];
  } else {
    std::fprintf(stderr, "%s: --%s needs a value\n", tool, std::string(*name).c_str());
    return false;
  }
  return true;
}

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_FLAGS_H_
