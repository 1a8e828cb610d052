// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/stats.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::Stats`, a snapshot of what a Pool<T> or PoolResource has done
// and holds.
//
// The figures are approximate: they are read without stopping the threads that use the pool,
// so counters that move together (a hit and the block count it lowered) may be seen one
// update apart, and sums over CPUs are not taken at one instant. Once every thread using the
// pool has stopped and synchronized with the reader (for example by joining), the snapshot is
// exact. Statistics never slow the operations they count by more than a plain store.

#ifndef SYNCPOOL_STATS_H_
#define SYNCPOOL_STATS_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace syncpool {

// One size class of a pool (Stats::classes): a PoolResource's classes, or a Pool<T>'s one.
struct ClassStats {
  uint64_t block_bytes = 0;    // The size of a block of the class.
  uint64_t hits = 0;           // Requests the CPUs' caches served (as Stats::hits).
  uint64_t cached_blocks = 0;  // In the caches: both generations, every CPU, the shared layer.
  // PoolResource only, classes up to 4 KiB: the spans held for the class, the blocks free in
  // them, and the blocks handed out and not returned (taken from the spans, less the cached).
  uint64_t span_bytes = 0;
  uint64_t span_free_blocks = 0;
  uint64_t in_use_blocks = 0;
};

struct Stats {
  // Which pool: `PoolResource "name"`, `Pool "name"` (Options::name; PoolResource::Default()
  // is "default"), or the kind and its address when it has no name. DebugString() starts
  // with it.
  std::string label;
  // Gets and allocations served from a cache (of any CPU, either generation). Where the
  // per-CPU caches run as restartable sequences, a pop that the kernel restarts at its last
  // instruction counts twice, so this is an upper bound there (exact on the locked path).
  uint64_t hits = 0;
  // Gets and allocations that found every cache empty: they called New or the upstream
  // resource (counted before the call, so a call that throws counts too).
  uint64_t misses = 0;
  // Times a CPU's cache of one class doubled its capacity because a Put found it full: how
  // the caches grew to the working set (options.h). Epochs that see no full stack halve it.
  uint64_t grows = 0;
  // Puts and deallocations that found their CPU's cache full (or, rarely, could not create
  // it): released at once.
  uint64_t spills = 0;
  // Blocks a full CPU cache moved to the shared layer (a TransferStack per class) for other
  // CPUs to take, in batches. High figures mean blocks are freed on other CPUs than the ones
  // they were taken on (threads that migrate, producer-consumer hand-offs).
  uint64_t shared_moves = 0;
  // PoolResource only: requests above the largest size class or the pooled alignment, passed
  // straight to the upstream resource (neither hits nor misses).
  uint64_t direct = 0;
  // PoolResource only: blocks that misses took from the upstream resource besides the one each
  // returned, and cached for the next allocations of their class (Options::refill_bytes).
  // Every block a PoolResource obtained upstream is a miss, a refilled block or a direct
  // request.
  uint64_t refilled = 0;

  // What the caches hold now, per generation. Bytes are block sizes (size classes) for a
  // PoolResource; for a Pool<T>, what the objects own where OwnedBytes<T> knows it (counted
  // as each object enters and leaves; split between the generations in proportion to their
  // objects), else sizeof(T) per object.
  uint64_t primary_blocks = 0;
  uint64_t primary_bytes = 0;
  uint64_t victim_blocks = 0;
  uint64_t victim_bytes = 0;

  // Why blocks left the caches, since the pool was created (besides `hits`, the blocks that
  // were reused, and `spills`, the blocks that never found room):
  //   - swept: released by sweeps: victim generations dropped, and the whole cache of a CPU
  //     that served no Get during an epoch;
  //   - over_budget: released to keep the resource or the process under its byte budget
  //     (Options::max_cached_bytes, SetProcessCacheLimit());
  //   - pressure: released by sweeps that ran because the system was short of memory.
  uint64_t swept_blocks = 0;
  uint64_t swept_bytes = 0;
  uint64_t over_budget_blocks = 0;
  uint64_t over_budget_bytes = 0;
  uint64_t pressure_blocks = 0;
  uint64_t pressure_bytes = 0;

  // Pool<T> only: objects a Put destroyed instead of caching because they owned more than
  // Options::max_object_bytes, and the bytes they owned. (Objects a Put destroyed because the
  // pool or the process was at its budget count as over_budget.)
  uint64_t oversized_objects = 0;
  uint64_t oversized_bytes = 0;

  // PoolResource only: bytes of whole pages handed back to the system before blocks went
  // upstream (Options::discard_min_bytes).
  uint64_t discarded_bytes = 0;
  // PoolResource only: the spans that hold its blocks of up to 4 KiB (docs/design.md,
  // "Spans"): the bytes of the spans it holds from upstream now; the bytes of all the blocks
  // in them (span_bytes less headers and tails); the bytes of the blocks free in them (neither
  // cached nor in use: a span goes back upstream once all of its blocks are free, at the next
  // epoch); and the bytes of spans given back upstream so far. So span_block_bytes minus
  // span_free_bytes is what of those classes is cached or in use.
  uint64_t span_bytes = 0;
  uint64_t span_block_bytes = 0;
  uint64_t span_free_bytes = 0;
  uint64_t span_released_bytes = 0;
  // PoolResource only: the bytes it holds from upstream now (its spans and every larger block,
  // cached or in use), and of those, the bytes of blocks handed out and not deallocated yet
  // (block sizes; requests passed straight upstream count their own size). Neither costs the
  // allocation paths anything: both are read from the spans and the record of larger blocks.
  uint64_t upstream_bytes = 0;
  uint64_t in_use_bytes = 0;
  // PoolResource only: the most bytes it held from upstream at once since it was created
  // (exact: counted where spans and larger blocks are taken and given back, on the slow
  // paths). Bytes in use never exceed what is held, so this bounds their peak too.
  uint64_t peak_upstream_bytes = 0;

  // Epochs this pool has been swept.
  uint64_t epochs = 0;

  // The caches the pool keeps per CPU or per thread (one per CPU id or thread slot that used
  // it; a thread's slot goes to the next thread after it exits), and the most bytes one of
  // them holds now (0 for a Pool<T> that counts owned bytes: those are not counted per cache).
  uint64_t caches = 0;
  uint64_t max_cache_bytes = 0;

  // The address space the caches' arrays of block pointers reserve: what each class uses,
  // growing as it grows (pages are touched only as far as the caches fill them).
  uint64_t reserved_bytes = 0;

  // The mode of the caches: "rseq per-CPU", "per-thread" or "locked per-CPU", and why it was
  // chosen ("glibc registered rseq", "glibc did not register rseq", "ThreadSanitizer",
  // "SYNCPOOL_RSEQ=0", ...). Static strings; empty in a default-constructed Stats.
  const char* mode = "";
  const char* mode_reason = "";

  // Per size class, smallest first (a Pool<T> has one): every class the pool has, used or
  // not; DebugString() lists those with any activity.
  std::vector<ClassStats> classes;

  // Stats::cached_blocks(), Stats::cached_bytes()
  uint64_t cached_blocks() const { return primary_blocks + victim_blocks; }
  uint64_t cached_bytes() const { return primary_bytes + victim_bytes; }

  // Stats::DebugString()
  //
  // A few lines for people: what is cached, how Gets were served, why blocks left.
  std::string DebugString() const;

  // Stats::ToString()
  //
  // One line of `name=value` pairs, every scalar field, for logs and machines.
  std::string ToString() const;
};

// syncpool::LiveStats()
//
// The statistics of every Pool<T> and PoolResource alive now, in the order they were made:
// what a running program can read to see every pool at once (mimalloc's mi_stats_print,
// tcmalloc's GetStats). Safe from any thread, while pools are made and destroyed: a pool
// being destroyed waits until the call is done with it. Not from a signal handler (it takes
// locks and allocates): call it from a thread of the program's own, an admin endpoint, or a
// thread that waits for a signal.
std::vector<Stats> LiveStats();

// syncpool::PrintStats()
//
// Writes every live pool's DebugString() to `out` (what SYNCPOOL_STATS=1 prints at exit), with
// the same rules as LiveStats().
void PrintStats(std::FILE* out = stderr);

}  // namespace syncpool

#endif  // SYNCPOOL_STATS_H_
