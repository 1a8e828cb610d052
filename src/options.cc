// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The table of SYNCPOOL_* variables (option_table.h), its reader and validation, and the
// defaults of Options after the environment (options.h).

#include "syncpool/options.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/env.h"
#include "src/option_table.h"
#include "syncpool/internal/size_class.h"

namespace syncpool {
namespace internal {

// Keep the rows in OptionId's order (checked below) and each doc to one line.
constexpr OptionSpec kOptionTable[kOptionCount] = {
    {kOptMaxBlockSize, "SYNCPOOL_MAX_BLOCK_SIZE", "Options::max_block_size", OptionKind::kBytes,
     256 * kKiB, 0, kMaxClassSize, nullptr,
     [](const Options& o) -> uint64_t { return o.max_block_size; },
     "`PoolResource`: the largest request served from the size classes; larger ones go "
     "straight upstream"},
    {kOptPerCpuClassBytes, "SYNCPOOL_PER_CPU_CLASS_BYTES", "Options::per_cpu_class_bytes",
     OptionKind::kBytes, 8 * kMiB, 0, kUnbounded, nullptr,
     [](const Options& o) -> uint64_t { return o.per_cpu_class_bytes; },
     "limit: the most bytes of one class a CPU's cache grows to per generation"},
    {kOptPerCpuBytes, "SYNCPOOL_PER_CPU_BYTES", "Options::per_cpu_bytes", OptionKind::kBytes,
     32 * kMiB, 0, kUnbounded, nullptr,
     [](const Options& o) -> uint64_t { return o.per_cpu_bytes; },
     "limit: the most bytes a CPU's capacities, all classes together, grow to per generation "
     "(0: none)"},
    {kOptMaxBlocksPerClass, "SYNCPOOL_MAX_BLOCKS_PER_CLASS", "Options::max_blocks_per_class",
     OptionKind::kCount, 262144, 1, uint64_t{1} << 24, nullptr,
     [](const Options& o) -> uint64_t { return o.max_blocks_per_class; },
     "limit: the most blocks (objects for `Pool<T>`) a CPU's cache grows to per class and "
     "generation"},
    {kOptInitialBlocksPerClass, "SYNCPOOL_INITIAL_BLOCKS_PER_CLASS",
     "Options::initial_blocks_per_class", OptionKind::kCount, 128, 1, uint64_t{1} << 24,
     nullptr, [](const Options& o) -> uint64_t { return o.initial_blocks_per_class; },
     "starting point: the capacity a CPU's cache of a class starts with (at most 64 KiB of "
     "blocks) and shrinks back to"},
    {kOptDiscardMinBytes, "SYNCPOOL_DISCARD_MIN_BYTES", "Options::discard_min_bytes",
     OptionKind::kBytes, 16 * kKiB, 0, kUnbounded, nullptr,
     [](const Options& o) -> uint64_t { return o.discard_min_bytes; },
     "`PoolResource`: blocks this large have their whole pages discarded before going "
     "upstream (0: never)"},
    {kOptRefillBytes, "SYNCPOOL_REFILL_BYTES", "Options::refill_bytes", OptionKind::kBytes,
     4 * kKiB, 0, kUnbounded, nullptr,
     [](const Options& o) -> uint64_t { return o.refill_bytes; },
     "`PoolResource`: a miss takes `min(64, refill_bytes / size)` blocks from upstream and "
     "caches all but the one it returns (0: one block)"},
    {kOptRetention, "SYNCPOOL_RETENTION", "Options::retention", OptionKind::kChoice, 0, 0, 0,
     "working_set|victim", nullptr,
     "what an epoch keeps: the working set (`kWorkingSet`) or, as Go, nothing but victims "
     "(`kVictim`)"},
    {kOptMaxCachedBytes, "SYNCPOOL_MAX_CACHED_BYTES", "Options::max_cached_bytes",
     OptionKind::kBytes, 0, 0, kUnbounded, nullptr,
     [](const Options& o) -> uint64_t { return o.max_cached_bytes; },
     "byte budget of one pool or resource (0: none; a `Pool<T>` with `OwnedBytes<T>` counts "
     "owned bytes)"},
    {kOptMaxObjectBytes, "SYNCPOOL_MAX_OBJECT_BYTES", "Options::max_object_bytes",
     OptionKind::kBytes, 0, 0, kUnbounded, nullptr,
     [](const Options& o) -> uint64_t { return o.max_object_bytes; },
     "`Pool<T>` with `OwnedBytes<T>`: a `Put` of an object owning more destroys it (0: no "
     "limit)"},
    {kOptMode, "SYNCPOOL_MODE", "Options::mode", OptionKind::kChoice, 0, 0, 0,
     "auto|percpu|perthread", nullptr,
     "what a cache left at `kAuto` runs as: per CPU with restartable sequences where glibc "
     "registered rseq, else per thread (`auto`); `percpu` or `perthread` force one"},
    {kOptProcessMaxCachedBytes, "SYNCPOOL_PROCESS_MAX_CACHED_BYTES", "SetProcessCacheLimit()",
     OptionKind::kBytes, 0, 0, kUnbounded, nullptr, nullptr,
     "byte budget of all pools and resources together (0: none)"},
    {kOptSweepIntervalMs, "SYNCPOOL_SWEEP_INTERVAL_MS",
     "Sweeper::Options::interval", OptionKind::kMillis, 1000, 1, uint64_t{24} * 3600 * 1000,
     nullptr, nullptr, "time between two epochs of the default sweeper"},
    {kOptPressureStallPct, "SYNCPOOL_PRESSURE_STALL_PCT", "SystemMemoryPressure()",
     OptionKind::kPercent, 10, 0, 100, nullptr, nullptr,
     "pressure when some task stalled on memory for this percentage of the last 10 s "
     "(`/proc/pressure/memory`, \"some avg10\")"},
    {kOptPressureAvailablePct, "SYNCPOOL_PRESSURE_AVAILABLE_PCT", "SystemMemoryPressure()",
     OptionKind::kPercent, 5, 0, 100, nullptr, nullptr,
     "without that file: pressure when MemAvailable is below this percentage of MemTotal "
     "(`/proc/meminfo`)"},
    {kOptRseq, "SYNCPOOL_RSEQ", "the process", OptionKind::kBool, 1, 0, 1, nullptr, nullptr,
     "0 turns the restartable sequences off: caches at `kAuto` then run per thread"},
    {kOptCpuId, "SYNCPOOL_CPU_ID", "the process", OptionKind::kChoice, 0, 0, 0,
     "auto|cpu|concurrency", nullptr,
     "what the rseq per-CPU caches index their columns by: the process's concurrency id "
     "(the kernel's `mm_cid`, Linux 6.3 and later), so that caches follow the threads, or the "
     "CPU id; `auto` and `concurrency` take `mm_cid` where the kernel publishes it, else the CPU "
     "id"},
    {kOptDebug, "SYNCPOOL_DEBUG", "Options::debug_checks", OptionKind::kBuildBool, 0, 0, 1,
     nullptr, nullptr,
     "misuse checks where `Options::debug_checks` is unset, for the whole process: a detected "
     "mistake aborts with a message; every call then takes the slow paths, where the checks are"},
    {kOptStats, "SYNCPOOL_STATS", "the process", OptionKind::kBool, 0, 0, 1, nullptr, nullptr,
     "1 prints every live pool's and resource's `Stats` on stderr at exit"},
};

namespace {

constexpr bool RowsInOrder() {
  for (int i = 0; i < kOptionCount; ++i) {
    if (kOptionTable[i].id != i) return false;
  }
  return true;
}

// The words of a kChoice row ("a|b|c"), in order: a value is its word's position.
std::vector<std::string> SplitChoices(const char* choices) {
  std::vector<std::string> words;
  std::string word;
  for (const char* p = choices;; ++p) {
    if (*p == '|' || *p == '\0') {
      words.push_back(word);
      word.clear();
      if (*p == '\0') break;
    } else {
      word += *p;
    }
  }
  return words;
}

std::string BytesText(uint64_t bytes) {
  if (bytes == kUnbounded) return "unbounded";
  if (bytes != 0 && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  if (bytes != 0 && bytes % kKiB == 0) return std::to_string(bytes / kKiB) + " KiB";
  return std::to_string(bytes);
}

}  // namespace

static_assert(RowsInOrder(), "kOptionTable's rows must follow OptionId");
static_assert(static_cast<int>(Retention::kWorkingSet) == 0 &&
                  static_cast<int>(Retention::kVictim) == 1,
              "SYNCPOOL_RETENTION's words follow Retention's enumerators");
static_assert(static_cast<int>(CacheMode::kAuto) == 0 && static_cast<int>(CacheMode::kPerCpu) == 1 &&
                  static_cast<int>(CacheMode::kPerThread) == 2,
              "SYNCPOOL_MODE's words follow CacheMode's enumerators");

uint64_t EnvOption(OptionId id) {
  const OptionSpec& spec = kOptionTable[id];
  switch (spec.kind) {
    case OptionKind::kBytes:
      return EnvBytes(spec.variable, spec.fallback, spec.min, spec.max);
    case OptionKind::kCount:
    case OptionKind::kMillis:
      return EnvInteger(spec.variable, spec.fallback, spec.min, spec.max);
    case OptionKind::kPercent:
      return static_cast<uint64_t>(EnvOptionNumber(id));
    case OptionKind::kBool:
      return EnvBool(spec.variable, spec.fallback != 0) ? 1 : 0;
    case OptionKind::kBuildBool:
      // Unset means "as the build of the code that made the Options" (DebugChecksEnabled()),
      // which only the Options know: here, off.
      return EnvBool(spec.variable, false) ? 1 : 0;
    case OptionKind::kChoice: {
      const std::vector<std::string> words = SplitChoices(spec.choices);
      std::vector<std::pair<const char*, int>> choices;
      for (size_t i = 0; i < words.size(); ++i) {
        choices.emplace_back(words[i].c_str(), static_cast<int>(i));
      }
      return static_cast<uint64_t>(
          EnvChoice(spec.variable, static_cast<int>(spec.fallback), choices));
    }
  }
  return spec.fallback;
}

namespace {

// One line on stderr for each SYNCPOOL_* variable the table does not list.
void WarnOfUnknownVariables() {
  constexpr char kPrefix[] = "SYNCPOOL_";
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.rfind(kPrefix, 0) != 0) continue;
    const std::string_view name = text.substr(0, text.find('='));
    bool known = false;
    for (const OptionSpec& spec : kOptionTable) known = known || name == spec.variable;
    if (!known) {
      std::fprintf(stderr, "syncpool: ignoring %.*s: not a variable syncpool reads (docs/design.md "
                   "lists them)\n", static_cast<int>(name.size()), name.data());
    }
  }
}

}  // namespace

uint64_t ProcessOption(OptionId id) {
  static std::once_flag warned;
  std::call_once(warned, WarnOfUnknownVariables);
  static std::array<std::once_flag, kOptionCount> once;
  static std::array<uint64_t, kOptionCount> values;
  std::call_once(once[id], [id] { values[id] = EnvOption(id); });
  return values[id];
}

double EnvOptionNumber(OptionId id) {
  const OptionSpec& spec = kOptionTable[id];
  return EnvNumber(spec.variable, static_cast<double>(spec.fallback),
                   static_cast<double>(spec.min), static_cast<double>(spec.max));
}

void ValidateOptions(const Options& options, const char* who, OptionUser user) {
  auto fail = [who](const char* field, const std::string& value, const std::string& expected) {
    throw std::invalid_argument(std::string(who) + ": " + field + " is " + value +
                                "; expected " + expected);
  };
  for (const OptionSpec& spec : kOptionTable) {
    if (spec.field == nullptr) continue;
    const bool ignored =
        user == OptionUser::kPool
            ? (spec.id == kOptMaxBlockSize || spec.id == kOptDiscardMinBytes ||
               spec.id == kOptRefillBytes)
            : spec.id == kOptMaxObjectBytes;
    if (ignored) continue;
    const uint64_t value = spec.field(options);
    if (value >= spec.min && value <= spec.max) continue;
    fail(spec.sets, std::to_string(value), OptionRangeText(spec));
  }
  if (const int r = static_cast<int>(options.retention); r < 0 || r > 1) {
    fail("Options::retention", "Retention(" + std::to_string(r) + ")",
         "Retention::kWorkingSet or Retention::kVictim");
  }
  if (const int m = static_cast<int>(options.mode); m < 0 || m > 2) {
    fail("Options::mode", "CacheMode(" + std::to_string(m) + ")",
         "CacheMode::kAuto, CacheMode::kPerCpu or CacheMode::kPerThread");
  }
  // The default starting point is lowered to a smaller limit; one set above it is a mistake.
  if (options.initial_blocks_per_class > options.max_blocks_per_class &&
      options.initial_blocks_per_class != GetOptionDefaults().initial_blocks_per_class) {
    fail("Options::initial_blocks_per_class", std::to_string(options.initial_blocks_per_class),
         "at most Options::max_blocks_per_class (" +
             std::to_string(options.max_blocks_per_class) + ")");
  }
  if (user == OptionUser::kResource && options.max_cached_bytes != 0 &&
      options.max_cached_bytes < ClassSize(0)) {
    fail("Options::max_cached_bytes", std::to_string(options.max_cached_bytes),
         "0 (no budget) or at least " + std::to_string(ClassSize(0)) +
             " (one block of the smallest class)");
  }
}

std::string OptionDefaultText(const OptionSpec& spec) {
  switch (spec.kind) {
    case OptionKind::kBytes:
      return spec.fallback == 0 ? "0" : BytesText(spec.fallback);
    case OptionKind::kCount:
      return std::to_string(spec.fallback);
    case OptionKind::kMillis:
      return std::to_string(spec.fallback) + " ms";
    case OptionKind::kPercent:
      return std::to_string(spec.fallback) + " %";
    case OptionKind::kBool:
      return spec.fallback != 0 ? "1" : "0";
    case OptionKind::kBuildBool:
      return "unset: 1 where the code making the `Options` is built without `NDEBUG`";
    case OptionKind::kChoice:
      return SplitChoices(spec.choices)[spec.fallback];
  }
  return "";
}

std::string OptionRangeText(const OptionSpec& spec) {
  switch (spec.kind) {
    case OptionKind::kBytes:
      if (spec.max == kUnbounded) return "bytes, from " + BytesText(spec.min);
      return "bytes, from " + BytesText(spec.min) + " to " + BytesText(spec.max);
    case OptionKind::kCount:
    case OptionKind::kPercent:
      return std::to_string(spec.min) + " to " + std::to_string(spec.max);
    case OptionKind::kMillis:
      return std::to_string(spec.min) + " to " + std::to_string(spec.max) + " ms";
    case OptionKind::kBool:
    case OptionKind::kBuildBool:
      return "0 or 1 (also false/true, off/on)";
    case OptionKind::kChoice: {
      std::string words;
      for (const std::string& word : SplitChoices(spec.choices)) {
        words += (words.empty() ? "" : ", ") + word;
      }
      return words;
    }
  }
  return "";
}

const OptionDefaults& GetOptionDefaults() {
  static const OptionDefaults defaults = [] {
    OptionDefaults d;
    d.max_block_size = ProcessOption(kOptMaxBlockSize);
    d.per_cpu_class_bytes = ProcessOption(kOptPerCpuClassBytes);
    d.per_cpu_bytes = ProcessOption(kOptPerCpuBytes);
    d.max_blocks_per_class = static_cast<uint32_t>(ProcessOption(kOptMaxBlocksPerClass));
    d.initial_blocks_per_class = static_cast<uint32_t>(ProcessOption(kOptInitialBlocksPerClass));
    d.discard_min_bytes = ProcessOption(kOptDiscardMinBytes);
    d.refill_bytes = ProcessOption(kOptRefillBytes);
    d.retention = static_cast<Retention>(ProcessOption(kOptRetention));
    d.max_cached_bytes = ProcessOption(kOptMaxCachedBytes);
    d.max_object_bytes = ProcessOption(kOptMaxObjectBytes);
    d.mode = static_cast<CacheMode>(ProcessOption(kOptMode));
    return d;
  }();
  return defaults;
}

std::atomic<uint64_t>& ProcessLimit() {
  static std::atomic<uint64_t> limit{ProcessOption(kOptProcessMaxCachedBytes)};
  return limit;
}

}  // namespace internal

void SetProcessCacheLimit(size_t bytes) {
  internal::ProcessLimit().store(bytes, std::memory_order_relaxed);
}

size_t ProcessCacheLimit() { return internal::ProcessLimit().load(std::memory_order_relaxed); }

}  // namespace syncpool
