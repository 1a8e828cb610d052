// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/option_table.h
// -----------------------------------------------------------------------------
//
// Every SYNCPOOL_* environment variable in one table: what it sets, its default, the values it
// accepts and one line of documentation. Not part of syncpool's API. Everything else comes
// from this table: the defaults of Options (options.cc), of the default sweeper and of the
// system's memory pressure, the environment reader (EnvOption()), the validation a Pool and a
// PoolResource make of their Options (ValidateOptions()), and the tables of README.md and
// docs/design.md (tools/options_doc.cc writes them; //tests:options_doc_test fails when they
// differ from this table). A default is written here and nowhere else.

#ifndef SYNCPOOL_SRC_OPTION_TABLE_H_
#define SYNCPOOL_SRC_OPTION_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace syncpool {

struct Options;

namespace internal {

// How a variable's value reads.
enum class OptionKind {
  kBytes,      // An integer number of bytes.
  kCount,      // An integer count.
  kMillis,     // An integer number of milliseconds.
  kPercent,    // A number (a decimal fraction allowed) from `min` to `max`.
  kBool,       // 1, true, on; 0, false, off.
  kBuildBool,  // As kBool; its default is on in builds without NDEBUG, off otherwise.
  kChoice,     // One of the words of `choices` ("a|b|c"); values are the words' positions.
};

// The variables, in the table's order.
enum OptionId : int {
  kOptMaxBlockSize,
  kOptPerCpuClassBytes,
  kOptPerCpuBytes,
  kOptMaxBlocksPerClass,
  kOptInitialBlocksPerClass,
  kOptDiscardMinBytes,
  kOptRefillBytes,
  kOptRetention,
  kOptMaxCachedBytes,
  kOptMaxObjectBytes,
  kOptMode,
  kOptProcessMaxCachedBytes,
  kOptSweepIntervalMs,
  kOptPressureStallPct,
  kOptPressureAvailablePct,
  kOptRseq,
  kOptCpuId,
  kOptDebug,
  kOptStats,
  kOptionCount,
};

// The values of SYNCPOOL_CPU_ID (kOptCpuId): the positions of its words.
inline constexpr uint64_t kCpuIdAuto = 0;
inline constexpr uint64_t kCpuIdCpu = 1;
inline constexpr uint64_t kCpuIdConcurrency = 2;

// One row of the table.
struct OptionSpec {
  OptionId id;
  const char* variable;
  // What the variable sets: an Options field ("Options::max_block_size"), another setting, or
  // a process-wide switch.
  const char* sets;
  OptionKind kind;
  uint64_t fallback;  // The default (kChoice: the position of its word; kBool: 0 or 1).
  uint64_t min;       // The values accepted, for the integer kinds and kPercent.
  uint64_t max;
  const char* choices;  // kChoice only.
  // For an Options field: the field's value, to validate an Options against [min, max]
  // (ValidateOptions()); nullptr for the others.
  uint64_t (*field)(const Options&);
  const char* doc;  // One line.
};

inline constexpr uint64_t kUnbounded = ~uint64_t{0};
inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * 1024;

// The table. Defined in options.cc, beside the readers (the field accessors need Options).
extern const OptionSpec kOptionTable[kOptionCount];

// EnvOption()
//
// The value of variable `id`: its environment variable where set and valid, else the table's
// default (an invalid value is reported on stderr, naming the variable, what it accepts and
// the default kept). kPercent variables are read with EnvOptionNumber(). Reads the environment
// at each call (tests); the library reads through ProcessOption().
uint64_t EnvOption(OptionId id);
double EnvOptionNumber(OptionId id);

// ProcessOption()
//
// EnvOption(id) read once per process: later calls return the first call's value, and an
// invalid value is reported once. The first call also reports, once, every SYNCPOOL_*
// variable of the environment that the table does not list (a misspelt name).
uint64_t ProcessOption(OptionId id);

// ValidateOptions()
//
// The one validation of Options, called by every Pool and PoolResource before anything is
// made: throws std::invalid_argument, naming `who`, the field, the value and what is accepted,
// when a field lies outside the values the table accepts, when an enum holds no enumerator,
// when initial_blocks_per_class was set above max_blocks_per_class (its default is lowered to
// the limit instead), and, for a resource, when max_cached_bytes is under one block of the
// smallest class. A field that a kind of pool ignores (a Pool's max_block_size,
// discard_min_bytes and refill_bytes; a resource's max_object_bytes) is accepted whatever it
// holds.
enum class OptionUser { kPool, kResource };
void ValidateOptions(const Options& options, const char* who,
                     OptionUser user = OptionUser::kResource);

// OptionDefaultText(), OptionRangeText()
//
// How the table's default and accepted values of `spec` read in documentation ("256 KiB",
// "working_set", "0 to 1 MiB").
std::string OptionDefaultText(const OptionSpec& spec);
std::string OptionRangeText(const OptionSpec& spec);

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_OPTION_TABLE_H_
