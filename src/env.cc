// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/env.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace syncpool {
namespace internal {
namespace {

void Complain(const char* name, const char* value, const std::string& expected,
              const std::string& fallback) {
  std::fprintf(stderr, "syncpool: ignoring %s=\"%s\": expected %s; keeping %s\n", name, value,
               expected.c_str(), fallback.c_str());
}

}  // namespace

uint64_t EnvInteger(const char* name, uint64_t fallback, uint64_t min, uint64_t max) {
  const char* value = std::getenv(name);
  if (value == nullptr) return fallback;
  errno = 0;
  char* end = nullptr;
  const unsigned long long parsed = std::strtoull(value, &end, 10);
  if (end != value && *end == '\0' && errno == 0 && value[0] != '-' && parsed >= min &&
      parsed <= max) {
    return parsed;
  }
  Complain(name, value,
           "an integer from " + std::to_string(min) + " to " + std::to_string(max),
           std::to_string(fallback));
  return fallback;
}

uint64_t EnvBytes(const char* name, uint64_t fallback, uint64_t min, uint64_t max) {
  const char* value = std::getenv(name);
  if (value == nullptr) return fallback;
  errno = 0;
  char* end = nullptr;
  const unsigned long long number = std::strtoull(value, &end, 10);
  bool ok = end != value && errno == 0 && value[0] != '-';
  while (ok && *end == ' ') ++end;
  unsigned shift = 0;
  if (ok && *end != '\0') {
    const std::string unit(end);
    if (unit == "K" || unit == "k" || unit == "KiB") {
      shift = 10;
    } else if (unit == "M" || unit == "MiB") {
      shift = 20;
    } else if (unit == "G" || unit == "GiB") {
      shift = 30;
    } else {
      ok = false;
    }
  }
  const unsigned long long bytes = number << shift;
  if (ok && (bytes >> shift) == number && bytes >= min && bytes <= max) return bytes;
  Complain(name, value,
           "bytes from " + std::to_string(min) + " to " + std::to_string(max) +
               " (an integer, optionally with K, KiB, M, MiB, G or GiB)",
           std::to_string(fallback));
  return fallback;
}

double EnvNumber(const char* name, double fallback, double min, double max) {
  const char* value = std::getenv(name);
  if (value == nullptr) return fallback;
  char* end = nullptr;
  const double parsed = std::strtod(value, &end);
  if (end != value && *end == '\0' && parsed >= min && parsed <= max) return parsed;
  Complain(name, value, "a number from " + std::to_string(min) + " to " + std::to_string(max),
           std::to_string(fallback));
  return fallback;
}

std::optional<bool> EnvOptionalBool(const char* name, const char* kept) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  for (const char* yes : {"1", "true", "on"}) {
    if (std::strcmp(value, yes) == 0) return true;
  }
  for (const char* no : {"0", "false", "off"}) {
    if (std::strcmp(value, no) == 0) return false;
  }
  Complain(name, value, "1, true, on, 0, false or off", kept);
  return std::nullopt;
}

bool EnvBool(const char* name, bool fallback) {
  return EnvOptionalBool(name, fallback ? "on" : "off").value_or(fallback);
}

int EnvChoice(const char* name, int fallback,
              const std::vector<std::pair<const char*, int>>& choices) {
  const char* value = std::getenv(name);
  if (value == nullptr) return fallback;
  std::string expected;
  std::string kept;
  for (const auto& [word, choice] : choices) {
    if (std::strcmp(value, word) == 0) return choice;
    expected += expected.empty() ? "one of: " : ", ";
    expected += word;
    if (choice == fallback) kept = word;
  }
  Complain(name, value, expected, kept);
  return fallback;
}

}  // namespace internal
}  // namespace syncpool
