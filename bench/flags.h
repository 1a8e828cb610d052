// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Command-line flags of the benchmark tools (burst, sweep_latency, retention): each tool
// declares its flags on a FlagParser, with where each value goes and what it accepts, and
// parses its command line in one call. Flags with a value are written `--name=value` or
// `--name value`; switches `--name`. Numbers are checked against a range.

#ifndef SYNCPOOL_BENCH_FLAGS_H_
#define SYNCPOOL_BENCH_FLAGS_H_

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// Parses a decimal integer in [low, high] into an int.
inline bool ParseInt(std::string_view text, int low, int high, int* out) {
  long value = 0;
  if (!ParseLong(text, low, high, &value)) return false;
  *out = static_cast<int>(value);
  return true;
}

// Parses a decimal number in [low, high].
inline bool ParseDouble(std::string_view text, double low, double high, double* out) {
  const std::string s(text);
  char* end = nullptr;
  const double value = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(value >= low && value <= high)) return false;
  *out = value;
  return true;
}

// Splits a comma-separated list, skipping empty items.
inline std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    if (comma != 0) parts.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return parts;
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

// The flags of one tool. Declare each flag once, then Parse() the command line:
//
//   FlagParser parser("retention");
//   parser.Int("threads", 1, 256, &flags.threads);
//   parser.Switch("verbose", &flags.verbose);
//   if (!parser.Parse(argc, argv)) { Usage(); return 2; }
//
// A value is stored as its flag is parsed; flags not on the command line keep what their
// targets held.
class FlagParser {
 public:
  explicit FlagParser(const char* tool) : tool_(tool) {}

  // FlagParser::Int(), FlagParser::Long(), FlagParser::Double()
  //
  // --name=N with N in [low, high].
  void Int(const char* name, int low, int high, int* out) {
    Custom(name, [=](std::string_view v) { return ParseInt(v, low, high, out); });
  }
  void Long(const char* name, long low, long high, long* out) {
    Custom(name, [=](std::string_view v) { return ParseLong(v, low, high, out); });
  }
  void Double(const char* name, double low, double high, double* out) {
    Custom(name, [=](std::string_view v) { return ParseDouble(v, low, high, out); });
  }

  // FlagParser::String()
  //
  // --name=TEXT, TEXT not empty.
  void String(const char* name, std::string* out) {
    Custom(name, [=](std::string_view v) {
      *out = std::string(v);
      return !v.empty();
    });
  }

  // FlagParser::Switch()
  //
  // --name, no value: sets `*out`.
  void Switch(const char* name, bool* out) { flags_.push_back({name, true, nullptr, out}); }

  // FlagParser::Custom()
  //
  // --name=TEXT, where `parse(TEXT)` stores the value and says whether TEXT is valid.
  void Custom(const char* name, std::function<bool(std::string_view)> parse) {
    flags_.push_back({name, false, std::move(parse), nullptr});
  }

  // FlagParser::Parse()
  //
  // Parses argv[1, argc). Returns false, after a message on stderr naming the tool, on an
  // unknown flag, a missing or invalid value or anything that is not a flag; and on --help or
  // -h (the caller then prints its usage).
  bool Parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--help" || arg == "-h") return false;
      if (arg.substr(0, 2) == "--") {
        const Flag* flag = Find(arg.substr(2));
        if (flag != nullptr && flag->is_switch) {
          *flag->on = true;
          continue;
        }
      }
      std::string_view name;
      std::string_view value;
      if (!SplitFlag(tool_, argc, argv, &i, &name, &value)) return false;
      const Flag* flag = Find(name);
      if (flag == nullptr || flag->is_switch) {
        std::fprintf(stderr, "%s: unknown flag --%s\n", tool_, std::string(name).c_str());
        return false;
      }
      if (!flag->parse(value)) {
        std::fprintf(stderr, "%s: invalid value \"%s\" for --%s\n", tool_,
                     std::string(value).c_str(), std::string(name).c_str());
        return false;
      }
    }
    return true;
  }

 private:
  struct Flag {
    std::string name;
    bool is_switch;
    std::function<bool(std::string_view)> parse;  // A flag with a value.
    bool* on;                                     // A switch.
  };

  const Flag* Find(std::string_view name) const {
    for (const Flag& f : flags_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  const char* const tool_;
  std::vector<Flag> flags_;
};

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_FLAGS_H_
