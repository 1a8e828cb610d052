// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/env.h
// -----------------------------------------------------------------------------
//
// Reading syncpool's SYNCPOOL_* environment variables. Not installed: the inline paths do not use it. Each reader
// returns the variable's value when it is set and valid; when it is set but invalid it prints
// one line on stderr naming the variable, the value and what was expected, and returns the
// default. docs/design.md lists every variable.

#ifndef SYNCPOOL_SRC_ENV_H_
#define SYNCPOOL_SRC_ENV_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace syncpool {
namespace internal {

// An integer in [min, max].
uint64_t EnvInteger(const char* name, uint64_t fallback, uint64_t min, uint64_t max);

// A byte count in [min, max]: an integer with an optional unit, K or KiB (1024), M or MiB,
// G or GiB ("64k", "1MiB", "256 KiB" and "262144" are all accepted).
uint64_t EnvBytes(const char* name, uint64_t fallback, uint64_t min, uint64_t max);

// A number (decimal fraction allowed) in [min, max].
double EnvNumber(const char* name, double fallback, double min, double max);

// "1", "true" or "on"; "0", "false" or "off".
bool EnvBool(const char* name, bool fallback);

// As EnvBool(), with no value when the variable is unset or invalid (`kept` says what is used
// instead, for the warning).
std::optional<bool> EnvOptionalBool(const char* name, const char* kept);

// One of the given words, as its paired value.
int EnvChoice(const char* name, int fallback,
              const std::vector<std::pair<const char*, int>>& choices);

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_ENV_H_
