// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/options.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::Options`, the tunables of a Pool<T> or PoolResource, each with
// its default. docs/design.md lists them in one table with their environment variables.
//
// Every default can be changed for the whole process by a SYNCPOOL_* environment variable
// (named beside each field), read once, when the first Options is made. An invalid value is
// reported on stderr (the variable, the value, what was expected) and the built-in default
// kept. The defaults and the values each field accepts are in one table,
// src/option_table.h (src/options.cc), which the tables of README.md and docs/design.md
// reproduce.
//
// Options are validated when a pool or resource is constructed; an invalid value throws
// std::invalid_argument naming the field, the value and what is accepted (docs/design.md,
// "Options", lists the rules). A field a kind of pool does not use is accepted and ignored.

#ifndef SYNCPOOL_OPTIONS_H_
#define SYNCPOOL_OPTIONS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "syncpool/version.h"

// The default of Options::checks_by_build in the including translation unit. A macro, not a
// constant: each translation unit that makes Options gets its own build's answer.
#ifdef NDEBUG
#define SYNCPOOL_INTERNAL_CHECKS_BY_BUILD false
#else
#define SYNCPOOL_INTERNAL_CHECKS_BY_BUILD true
#endif

namespace syncpool {

class Sweeper;

// Retention
//
// What an epoch keeps of a CPU's cache (sweeper.h).
enum class Retention {
  // Blocks taken during the epoch stay in the primary generation; only those nobody took (the
  // bottom of each stack, below its low-water mark) become victims, and victims left untaken
  // for another epoch are released. A steady workload keeps finding its blocks on the fast
  // path after a sweep; idle blocks still leave within two epochs.
  kWorkingSet,
  // Go's sync.Pool: every epoch releases the victim generation and demotes the whole primary.
  kVictim,
};

// CacheMode
//
// Where a pool keeps its caches (Options::mode; docs/design.md, "Per-CPU protocol", has the
// details).
enum class CacheMode {
  // Per CPU with restartable sequences where glibc registered its rseq area (x86-64 Linux,
  // glibc 2.35 or later), else per thread. SYNCPOOL_MODE may force either.
  kAuto,
  // Per CPU: restartable sequences where usable, else every operation takes the CPU cache's
  // lock (slower than kAuto's per-thread caches there).
  kPerCpu,
  // Per thread: a cache for each thread that uses the pool, its own operations without an
  // atomic read-modify-write; drained by the sweeper like a CPU's (an idle thread's cache
  // empties within two epochs) and moved to the shared layer when the thread exits.
  kPerThread,
};

namespace internal {

// The defaults of Options after the SYNCPOOL_* environment variables (read once).
struct OptionDefaults {
  size_t max_block_size;
  size_t per_cpu_class_bytes;
  size_t per_cpu_bytes;
  uint32_t max_blocks_per_class;
  uint32_t initial_blocks_per_class;
  size_t discard_min_bytes;
  size_t refill_bytes;
  Retention retention;
  size_t max_cached_bytes;
  size_t max_object_bytes;
  CacheMode mode;  // SYNCPOOL_MODE: what a cache left at CacheMode::kAuto asks for.
};
const OptionDefaults& GetOptionDefaults();

}  // namespace internal

struct Options {
  // A name for reports (SYNCPOOL_STATS=1); empty: the pool's kind and address.
  std::string name{};

  // The sweeper that runs this cache's epochs; nullptr means Sweeper::Default().
  Sweeper* sweeper = nullptr;

  // PoolResource: the largest request served from the size classes; larger requests go
  // straight upstream. SYNCPOOL_MAX_BLOCK_SIZE.
  size_t max_block_size = internal::GetOptionDefaults().max_block_size;

  // Per-CPU capacities grow and shrink with the working set. Each CPU's cache of one size
  // class (PoolResource) or of the objects (Pool<T>) starts with room for
  //   min(initial_blocks_per_class, max(2, 64 KiB / S))
  // blocks per generation, where S is the class size (sizeof(T) for a Pool<T>). When a Put
  // finds it full the room doubles, up to the limit
  //   min(max_blocks_per_class, max(2, per_cpu_class_bytes / S)),
  // as long as the room of all of that CPU's classes stays within per_cpu_bytes; each epoch
  // that saw no Put find it full halves it again, never below where it started nor below what
  // it holds. So per_cpu_class_bytes, max_blocks_per_class and per_cpu_bytes are limits (what
  // one CPU may hold of one class, and of all classes, per generation) and
  // initial_blocks_per_class a starting point; a Put that finds the cache at its limit moves a
  // batch to the shared layer. With the defaults a CPU's cache grows to per_cpu_bytes per
  // generation, and a burst larger than that goes back upstream as it is freed, so that an
  // epoch has at most that much per CPU to give back (docs/memory.md). PoolResource's classes
  // of up to 4 KiB grow to at most 64 KiB per CPU (and less where these limits say so): what
  // overflows goes back to the resource's spans, which hand blocks out in address order
  // (pool_resource.h).
  // The per-class limits reserve address space for each CPU's slot arrays (8 bytes per block,
  // three arrays: about 34 MiB per CPU for the default resource's classes), mapped without
  // swap accounting and touched only as far as the caches fill; pages above a shrunk capacity
  // are given back. Under vm.overcommit_memory=2 lower them: a CPU whose cache cannot be mapped
  // releases what it is given instead of caching it.

  // The most bytes of one class one CPU may cache per generation (the limit above).
  // SYNCPOOL_PER_CPU_CLASS_BYTES.
  size_t per_cpu_class_bytes = internal::GetOptionDefaults().per_cpu_class_bytes;

  // The most bytes one CPU's capacities, all classes together, may grow to per generation
  // (the limit above); 0: no such limit. Capacities start where they start even if their sum
  // is larger: this bounds growth only. SYNCPOOL_PER_CPU_BYTES.
  size_t per_cpu_bytes = internal::GetOptionDefaults().per_cpu_bytes;

  // The most blocks (PoolResource) or objects (Pool<T>) one CPU may cache per class and
  // generation (the limit above). SYNCPOOL_MAX_BLOCKS_PER_CLASS.
  uint32_t max_blocks_per_class = internal::GetOptionDefaults().max_blocks_per_class;

  // How many blocks or objects a CPU's cache of one class starts with room for, per
  // generation (the starting point above), and the least it shrinks back to.
  // SYNCPOOL_INITIAL_BLOCKS_PER_CLASS.
  uint32_t initial_blocks_per_class = internal::GetOptionDefaults().initial_blocks_per_class;

  // PoolResource: blocks of at least this many bytes have their whole pages discarded
  // (madvise(MADV_DONTNEED), past their first 64 bytes) when the resource gives them back
  // upstream, from a sweep, a spill, a drain or a deallocate above max_block_size, so that
  // the memory returns to the system at once whatever the upstream allocator does with the
  // block (see internal/pages.h). 0 turns it off. Costs one system call per such block given
  // back, never on the cached path. SYNCPOOL_DISCARD_MIN_BYTES.
  size_t discard_min_bytes = internal::GetOptionDefaults().discard_min_bytes;

  // PoolResource: a miss (no cache of this CPU, nor the shared layer, has a block of the
  // class) takes min(64, max(1, refill_bytes / S)) blocks of the class's size S from upstream,
  // not one: it returns the first and caches the others on the CPU for the next allocations
  // of that class, so that a run of misses (a cold start, a working set the caches do not
  // hold) pays the slow path once per batch instead of once per block. 0 (or less than S):
  // one block per miss. The blocks cached this way are like any other (Stats, epochs,
  // budgets). SYNCPOOL_REFILL_BYTES.
  size_t refill_bytes = internal::GetOptionDefaults().refill_bytes;

  // What each epoch keeps (see Retention). SYNCPOOL_RETENTION=working_set|victim.
  Retention retention = internal::GetOptionDefaults().retention;

  // A byte budget for what this pool or resource caches (block sizes; for a Pool<T>, what its
  // objects own where OwnedBytes<T> knows it, else sizeof(T)); 0: none.
  // The per-CPU limits are lowered at construction so that all caches full stay within it
  // where they can (at least one block per class and CPU is kept), and a cache grows only while
  // its stack full at twice the size would stay within it; what remains is enforced at every
  // epoch and whenever blocks move to the shared layer: what would exceed the budget is
  // released instead (Stats::over_budget_blocks). A Pool<T> that knows its objects' owned
  // bytes counts them as objects enter and leave its caches instead: a Put that would take it
  // over the budget destroys the object it was given, and an epoch that finds it over releases
  // the largest idle objects first (docs/design.md). SYNCPOOL_MAX_CACHED_BYTES.
  size_t max_cached_bytes = internal::GetOptionDefaults().max_cached_bytes;

  // Pool<T> whose objects' owned bytes are known (syncpool/owned_bytes.h: strings, vectors,
  // your own specialisations): a Put of an object that owns more than this many bytes
  // destroys it instead of caching it (Stats::oversized_objects), so that one request that
  // grew its buffer to 100 MiB does not hand 100 MiB to every later user of the pool. Tested
  // where the object is measured for the budgets, after the reset hook; a Pool of other types
  // (every object sizeof(T)) and a PoolResource ignore it. 0: no limit.
  // SYNCPOOL_MAX_OBJECT_BYTES.
  size_t max_object_bytes = internal::GetOptionDefaults().max_object_bytes;

  // Which caches to keep (CacheMode): kAuto picks per-CPU caches run by restartable
  // sequences where glibc registered its rseq area, else per-thread caches. SYNCPOOL_MODE=
  // auto|percpu|perthread decides for the caches left at kAuto (tests and benchmarks);
  // kAuto.
  CacheMode mode = CacheMode::kAuto;

  // Whether the caches may run as restartable sequences or per thread (kAuto and kPerThread
  // above). false forces the locked per-CPU mode, every operation under a per-CPU lock (for
  // tests of the per-CPU policy). SYNCPOOL_RSEQ=0 turns the
  // sequences off for every cache of the process instead, which then runs per thread.
  // SYNCPOOL_RSEQ=0|1.
  bool allow_rseq = true;

  // Whether misuse is checked: a deallocate whose size or alignment differs from the
  // allocation, a deallocate of a pointer the resource did not hand out (or a second
  // deallocate), a second Put of the same object. A detected mistake aborts with a message
  // naming the pool and the mistake, and a stack trace. What decides, first match wins:
  //   1. this field, when set;
  //   2. SYNCPOOL_DEBUG=1 (on) or SYNCPOOL_DEBUG=0 (off), for the whole process;
  //   3. checks_by_build below: on where the code that made these Options was compiled
  //      without NDEBUG (a debug build of your program, whatever build the library is).
  // With checks every call takes the slow paths (the caches keep their mode) and records or
  // checks the block in one registry under one lock: they are for finding bugs, not for
  // production.
  std::optional<bool> debug_checks{};

  // Whether the translation unit that made these Options was compiled without NDEBUG: its
  // default is written here, in the header, so that it follows the build of the code that
  // constructs the Options (rule 3 above), not the library's. Leave it at its default; set
  // debug_checks to decide yourself.
  bool checks_by_build = SYNCPOOL_INTERNAL_CHECKS_BY_BUILD;
};

// SetProcessCacheLimit()
//
// A byte budget for everything every pool and resource of the process caches together (0, the
// default unless SYNCPOOL_PROCESS_MAX_CACHED_BYTES is set: none). Enforced at every epoch and
// whenever blocks move to a cache's shared layer: what would exceed it is released instead
// (Stats::over_budget_blocks). Thread-safe.
void SetProcessCacheLimit(size_t bytes);
size_t ProcessCacheLimit();

namespace internal {
// The process-wide budget behind SetProcessCacheLimit() (its default from the environment).
std::atomic<uint64_t>& ProcessLimit();
}  // namespace internal

}  // namespace syncpool

#endif  // SYNCPOOL_OPTIONS_H_
