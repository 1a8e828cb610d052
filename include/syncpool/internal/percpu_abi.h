// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/percpu_abi.h
// -----------------------------------------------------------------------------
//
// The layouts every inline operation reads, and their owners write elsewhere. Not part of
// syncpool's API.
//   - The rseq area that glibc registers for each thread: where it is (g_rseq_area_offset),
//     which of its fields indexes the columns (g_rseq_id_offset), and which column ids the
//     sequences may use now (g_rseq_cpu_limit). Written by src/cpu.cc (cpu.h: how they are
//     chosen); read by the sequences (percpu_rseq.h).
//   - One size class's stacks on one CPU or thread slot (ClassStack), which the sequences and
//     the per-thread owner's operations (local_cache.h) address by offset, and the spacing of
//     the columns in a cache's region. The rest of a CPU's cache (its lock, growth, the epoch's
//     aging) is cpu_cache.h; who may change what, by mode, is stated there.

#ifndef SYNCPOOL_INTERNAL_PERCPU_ABI_H_
#define SYNCPOOL_INTERNAL_PERCPU_ABI_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

// x86-64 Linux with glibc: the restartable sequences (percpu_rseq.h) are compiled in. Whether
// they are usable is decided at run time (RseqRegistered(), RseqUsable()). No glibc header is
// needed for them (<sys/rseq.h> appeared in 2.35): the ABI constants are below.
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define SYNCPOOL_HAVE_GLIBC_RSEQ 1
#else
#define SYNCPOOL_HAVE_GLIBC_RSEQ 0
#endif

#if SYNCPOOL_HAVE_GLIBC_RSEQ
// The signature that precedes every abort handler: the one glibc registers its areas with on
// x86-64 (RSEQ_SIG; src/cpu.cc checks it against <sys/rseq.h> where that header exists).
#define SYNCPOOL_RSEQ_SIG 0x53053053
#endif

namespace syncpool {
namespace internal {

// The CPU ids the restartable sequences serve are those below g_rseq_cpu_limit (see
// percpu_rseq.h): NumCpus() once AllowRseqCpus() ran (RseqUsable() calls it when it decides
// for the sequences), 0 before, and 0 while src/cpu.cc closes the sequences to send every
// operation to the slow paths. Read by every sequence (a plain load: it changes only when
// the sequences open or close); written under a mutex in cpu.cc. It belongs to the sequences
// but lives in this layer, below them, because cpu.cc closes it in the same step that decides
// why.
extern std::atomic<uint32_t> g_rseq_cpu_limit;

#if SYNCPOOL_HAVE_GLIBC_RSEQ
// Offsets of the fields of the rseq area (the kernel's struct rseq, which glibc's follows) that
// syncpool reads and writes: `cpu_id` (32 bits, negative while the kernel has not registered the
// area for the thread) and `rseq_cs` (64 bits, the armed critical-section descriptor).
inline constexpr int kRseqCpuIdOffset = 4;
inline constexpr int kRseqCsOffset = 8;
// `mm_cid` (32 bits, Linux 6.3 and later): the thread's concurrency id in its process, which
// the kernel keeps below the number of the process's threads that run at once and below the
// number of CPUs it may run on. The auxiliary vector's AT_RSEQ_FEATURE_SIZE is at least 28
// where the kernel writes it.
inline constexpr int kRseqMmCidOffset = 24;

// g_rseq_area_offset
//
// The offset from the thread pointer of the rseq area that CurrentCpu() reads and the
// restartable sequences write (one load, as glibc's `__rseq_offset` was). Set once by
// InitRseqArea(), and never to a place that is not an rseq area of every thread:
//   - glibc's `__rseq_offset` where glibc has one (2.35 and later), registered or not: glibc
//     reserves the area in every thread even when it does not register it, and leaves its
//     cpu_id at RSEQ_CPU_ID_REGISTRATION_FAILED (-2) then;
//   - otherwise (glibc 2.34) the offset of an initial-exec thread-local area of syncpool's own
//     (src/cpu.cc), 32-byte aligned, which the kernel never sees: its cpu_id stays -2, so
//     every sequence fails its CPU bound, and the store of `rseq_cs` lands in it.
// SAFETY: every sequence stores to %fs:(g_rseq_area_offset + kRseqCsOffset) before anything
// else, on every cache, in either mode. Before InitRseqArea() the offset is 0, where that store
// would overwrite the thread control block: InitRseqArea() must run before any sequence can
// (the ELF constructor and BlockCache's constructor see to that).
// Declared const everywhere but in src/cpu.cc, which defines and writes it (as glibc declares
// `__rseq_offset` const and writes it at startup): a sequence's "memory" clobber would otherwise
// make the compiler load it again for every sequence, where a loop of them can keep it in a
// register. It never changes once a sequence can
// read it. (The two declarations name one object: a variable's linkage name does not encode
// its type.)
#ifdef SYNCPOOL_RSEQ_AREA_OFFSET_WRITABLE
extern ptrdiff_t g_rseq_area_offset;
#else
extern const ptrdiff_t g_rseq_area_offset;
#endif

// g_rseq_id_offset
//
// The offset from the thread pointer of the field the restartable sequences index the caches'
// columns by (percpu_rseq.h): the area's `cpu_id`, or its `mm_cid` once
// IndexRseqByConcurrencyId() chose it. Set by InitRseqArea() to the `cpu_id` of the area at
// g_rseq_area_offset, and changed at most once after, before any sequence can pass its CPU
// bound (the choice is made before AllowRseqCpus(), and no cache runs sequences before that).
// Declared const outside src/cpu.cc for the same reason as g_rseq_area_offset.
#ifdef SYNCPOOL_RSEQ_AREA_OFFSET_WRITABLE
extern ptrdiff_t g_rseq_id_offset;
#else
extern const ptrdiff_t g_rseq_id_offset;
#endif
#endif  // SYNCPOOL_HAVE_GLIBC_RSEQ


inline constexpr size_t kCacheLineSize = 64;

// One size class's two generations on one CPU: what the sequences use in one cache line, the
// sizing bookkeeping in the next (both this CPU's own). Standard layout: the restartable
// sequences (percpu_rseq.h) address its fields by offset.
//
// Dynamic capacity. The three slot arrays of a class hold `reserve` slots each: address space
// only (pages are touched as the stack reaches them), reserved for what the class uses and
// growing with it, so that a process with many pools used a little reserves a little:
//   - the capacity grows (doubling, up to max_capacity) when a Put finds the primary stack
//     full (CpuCache::Grow(), under `lock`). Within the reserve no array moves, and raising
//     open_capacity while sequences run is safe: a sequence that read the old value is merely
//     stricter, and every slot below the new one exists;
//   - beyond the reserve, Grow() moves the class's three arrays to a larger mapping of their
//     own (CpuCache::Grow() with `exclusive`), copying what the generations hold. That needs
//     what a remote operation gives: no inline operation can be using the old arrays (closed
//     and fenced in the rseq mode; the column's owner itself, or closed and waited for, in the
//     per-thread mode; the lock in the locked mode). Without it, or while the epoch has the
//     spare array detached, or when the mapping cannot be made, the class keeps its capacity
//     (the Put moves a batch out or spills, as at the maximum). The old own mapping is
//     unmapped at once: nothing else holds a pointer into it;
//   - it shrinks (halving, never below min_capacity nor below what either generation holds)
//     at an epoch that saw no overflow, inside the epoch's remote operation
//     (CpuCache::AgeDetach()), with the cache closed.
struct alignas(kCacheLineSize) ClassStack {
  // The three fields every sequence reads come first, in one 16-byte unit.
  // INVARIANT: primary_count <= capacity and victim_count <= capacity <= max_capacity.
  std::atomic<uint32_t> primary_count{0};
  // What the sequences may fill the primary generation to: `capacity` while the cache is open
  // to sequences, 0 while it is closed (or not yet opened, or in the locked mode), which fails
  // every pop (count - 1 < 0 never holds) and every push. Local operations only read it; it
  // changes under `lock` only (CpuCache::OpenToSequences(), CloseToSequences()).
  std::atomic<uint32_t> open_capacity{0};
  void** primary = nullptr;  // `reserve` slots; sweeps rotate it with `victim`, `spare`.
  std::atomic<uint32_t> victim_count{0};
  // How many blocks each generation may hold now. Changed under `lock` only (Grow(), and the
  // epoch's AgeDetach() with the cache closed); read without it by probes (relaxed).
  std::atomic<uint32_t> capacity{0};
  // The lowest primary_count since the last epoch. Lowered by primary pops (in the rseq mode
  // inside their sequence, so only on this CPU; a restarted pop may lower it by one block too
  // many, which only keeps one more block as working set), reset by the epoch.
  uint32_t low_water = 0;
  // The per-thread mode's open_capacity (thread_slots.h): what the owning thread's inline
  // operations may fill the primary generation to, 0 while a remote operation holds the
  // column. open_capacity stays 0 in that mode, so that no sequence ever succeeds on it.
  std::atomic<uint32_t> owner_open{0};
  void** victim = nullptr;  // `reserve` slots.
  // A third array of `reserve` slots that no sequence reads: the epoch makes it the new
  // primary and detaches the old victim array, so that what the epoch does while the cache is
  // closed does not grow with what it caches (see CpuCache::AgeDetach()). Changed under
  // `lock` only; null between AgeDetach() and the matching ReturnSpare().
  void** spare = nullptr;
  // Hits on this class of this CPU's cache: in the locked mode written under `lock`; in the
  // rseq mode incremented inside the pop sequences (an abort after the increment overcounts by
  // one, so the figure is approximate, as statistics are).
  std::atomic<uint64_t> hits{0};
  // The per-thread mode's busy flag: 1 while the owning thread is inside an inline operation
  // on this class (thread_slots.h). Unused in the other modes.
  std::atomic<uint32_t> busy{0};

  // The second cache line: sizing, never read by the sequences.
  // primary_count and victim_count as the last epoch left them (the sweeper's own): how deep
  // the epoch dug into the primary stack (epoch_count - low_water) plus what it took from the
  // victims (epoch_victims - victim_count) is its working set (see CpuCache::AgeDetach()).
  alignas(kCacheLineSize) uint32_t epoch_count = 0;
  uint32_t epoch_victims = 0;
  // The capacity the stack starts with and never shrinks below, and the most it grows to.
  // Immutable after creation.
  uint32_t min_capacity = 0;
  uint32_t max_capacity = 0;
  // The size of one block of this class (for CpuCache::capacity_bytes). Immutable.
  uint32_t block_bytes = 0;
  // Puts that found the primary stack full since the last epoch (relaxed; written by the slow
  // path of Puts on this CPU, reset by the epoch): an epoch that saw none shrinks the capacity.
  std::atomic<uint32_t> overflows{0};
  // The highest capacity since the slot arrays' pages above the capacity were last given back
  // (CpuCache::ReleaseSlotPages()). Written under `lock`; read without it by CanShrink().
  std::atomic<uint32_t> touched{0};
  // How many slots each of the three arrays has (capacity <= reserve <= max_capacity).
  // Changed under `lock` by a Grow() that moves the arrays, with no inline operation able to
  // use them (see above); read without it as a hint (GrowMovesArrays()).
  std::atomic<uint32_t> reserve{0};
  // Gets of this class on this CPU that found every cache empty: in the rseq mode added by a
  // restartable sequence on this CPU (RseqCountMiss(): exact, no atomic read-modify-write);
  // where that cannot run, CpuCache::misses counts instead.
  std::atomic<uint64_t> misses{0};
  // The mapping of this class's arrays once a Grow() moved them out of the cache's first
  // mapping (3 * reserve slots, whole pages); null before. Under `lock`, as `reserve`.
  void** own_slots = nullptr;
};

// log2 of the distance between two CPUs' stacks of one class: two cache lines, because x86
// prefetchers fetch lines in aligned pairs, so that CPUs writing neighbouring lines would
// still contend.
inline constexpr int kClassStackShift = 7;
static_assert(sizeof(ClassStack) <= size_t{1} << kClassStackShift);

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_PERCPU_ABI_H_
