// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/percpu_rseq.h
// -----------------------------------------------------------------------------
//
// Restartable sequences over the per-CPU caches (cpu_cache.h), on Linux x86-64 with the rseq
// area glibc registers for every thread. Not part of syncpool's API.
//
// A pop or push of one block on the current CPU's stack is one critical section that reads
// the CPU id, finds that CPU's cache in a table of caches open to sequences, and commits with a
// single store of the stack's count (the slot of a push is written before the commit, where a
// restart makes the write harmless). If the thread is preempted, migrated or signalled inside
// the section, the kernel moves it to the abort handler, which restarts the section from the
// top. No lock, no atomic read-modify-write.
//
// The table (one entry per CPU id below kRseqMaxCpus, owned by the BlockCache) is the whole
// protocol between local and remote operations:
//   - An entry is null while no sequence may touch that CPU's cache: before the cache exists,
//     always in the locked mode, and while a remote operation works on it. A sequence that
//     reads null (or a CPU id at or above kRseqMaxCpus, or the negative id of a thread whose
//     rseq area the kernel did not register) leaves for the slow path.
//   - Remote operations (sweeps, drains, steals, and fake-CPU operations in tests) never run
//     these sequences on another CPU's cache. They take the cache's lock, store null in its
//     entry, and fence with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) on that CPU:
//     when the fence returns, every sequence that read the entry before the null store has
//     committed or been restarted, and a restarted or new one reads null. So the remote
//     operation owns the cache until it stores the cache back in the entry (release, under
//     the lock). A thread that finds the entry null waits for the remote operation by taking
//     the lock.
//   - The entry is first set under the cache's lock, so that it cannot reappear in the middle
//     of a remote operation.
//
// glibc owns the registration of the rseq area; syncpool never registers one. It only writes
// the area's `rseq_cs` field, as the rseq ABI intends. glibc reserves the area in every thread
// even when it does not register it, with cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED, so the
// sequences may run anywhere glibc has <sys/rseq.h>: unregistered threads fail the CPU bound.

#ifndef SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_
#define SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "syncpool/internal/cpu.h"
#include "syncpool/internal/cpu_cache.h"

#if SYNCPOOL_HAVE_GLIBC_RSEQ && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if !__has_feature(thread_sanitizer)
#define SYNCPOOL_RSEQ_FAST_PATH 1
#endif
#else
#define SYNCPOOL_RSEQ_FAST_PATH 1
#endif
#endif
#ifndef SYNCPOOL_RSEQ_FAST_PATH
// ThreadSanitizer cannot see restartable sequences; other platforms have none.
#define SYNCPOOL_RSEQ_FAST_PATH 0
#endif

namespace syncpool {
namespace internal {

// How many CPU ids the sequences serve (the size of a BlockCache's table). Threads on CPUs
// with higher ids, which only machines with more CPUs than this have, use the slow path.
inline constexpr uint32_t kRseqMaxCpus = 1024;

// RseqUsable()
//
// Whether caches may use the restartable sequences: built for x86-64 Linux without
// ThreadSanitizer, glibc registered its rseq area (`__rseq_size != 0`; 0 under
// GLIBC_TUNABLES=glibc.pthread.rseq=0 or valgrind), SYNCPOOL_RSEQ is not "0", and the process
// registered for membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ). Decided once per process.
bool RseqUsable();

// FenceCpu()
//
// Restarts every restartable sequence of this process running on `cpu`, and orders this
// thread's earlier stores before whatever that CPU runs next. REQUIRES: RseqUsable().
void FenceCpu(int cpu);

#if SYNCPOOL_RSEQ_FAST_PATH

// Offsets of the fields of glibc's struct rseq that the sequences use.
inline constexpr int kRseqCpuIdOffset = 4;
inline constexpr int kRseqCsOffset = 8;

#define SYNCPOOL_RSEQ_STR_(x) #x
#define SYNCPOOL_RSEQ_STR(x) SYNCPOOL_RSEQ_STR_(x)

// The common head of both sequences. Emits the critical-section descriptor (start 82, length up
// to the commit label 83, abort handler 84; in the __rseq_cs section, in the same COMDAT group
// as the function so that a discarded copy takes its descriptor along), arms it in this
// thread's rseq area at 80 (where the abort handler restarts), then, inside the section, reads
// the CPU id and leaves for the `fail` label unless it is below kRseqMaxCpus and the table
// holds a cache for it. Leaves %[cache] pointing at the CpuCache.
#define SYNCPOOL_RSEQ_ENTER                                  \
  ".pushsection __rseq_cs, \"aw?\"\n\t"                      \
  ".balign 32\n\t"                                           \
  "81:\n\t"                                                  \
  ".long 0x0, 0x0\n\t"                                       \
  ".quad 82f, (83f - 82f), 84f\n\t"                          \
  ".popsection\n\t"                                          \
  "80:\n\t"                                                  \
  "leaq 81b(%%rip), %[scratch]\n\t"                          \
  "movq %[scratch], %%fs:%c[cs_off](%[area])\n\t"            \
  "82:\n\t"                                                  \
  "movl %%fs:%c[cpu_off](%[area]), %k[scratch]\n\t"          \
  "cmpl %[max_cpus], %k[scratch]\n\t"                        \
  "jae %l[fail]\n\t"                                         \
  "movq (%[table], %[scratch], 8), %[cache]\n\t"             \
  "testq %[cache], %[cache]\n\t"                             \
  "jz %l[fail]\n\t"

// The abort handler, preceded by the signature glibc registered the area with: restarts.
#define SYNCPOOL_RSEQ_ABORT_HANDLER                          \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                 \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                               \
  ".long " SYNCPOOL_RSEQ_STR(RSEQ_SIG) "\n\t"                \
  "84:\n\t"                                                  \
  "jmp 80b\n\t"                                              \
  ".popsection\n\t"

// The operands SYNCPOOL_RSEQ_ENTER uses.
#define SYNCPOOL_RSEQ_OPERANDS                                                       \
  [area] "r"(__rseq_offset), [table] "r"(table), [stack] "r"(stack_offset),          \
      [max_cpus] "i"(kRseqMaxCpus), [cs_off] "i"(kRseqCsOffset),                     \
      [cpu_off] "i"(kRseqCpuIdOffset)

// RseqPop()
//
// Pops the top block of the stack at `stack_offset` (CpuCache::StackOffset()) of the current
// CPU's cache, in the generation whose count and slots lie at kCountOffset and kSlotsOffset in
// ClassStack. `table` has kRseqMaxCpus entries (see above). Returns nullptr when the table
// holds no cache for the CPU or the stack is empty. The sequence jumps straight to the
// caller's failure branch (asm goto), so a miss costs no extra test. With kLowWater, it also
// lowers the stack's low_water to the new count (inside the section, so only on this CPU).
template <size_t kCountOffset, size_t kSlotsOffset, bool kLowWater, bool kCountHit = true>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* RseqPop(const std::atomic<CpuCache*>* table,
                                                  size_t stack_offset) {
  void* result;
  uint64_t scratch;
  char* cache;
  asm volatile goto(SYNCPOOL_RSEQ_ENTER
           "movl %c[count](%[cache], %[stack]), %k[scratch]\n\t"
           "testl %k[scratch], %k[scratch]\n\t"
           "jz %l[fail]\n\t"
           "movq %c[slots](%[cache], %[stack]), %[result]\n\t"
           "movq -8(%[result], %[scratch], 8), %[result]\n\t"
           "subl $1, %k[scratch]\n\t"
           ".if %c[track]\n\t"
           "cmpl %c[lwm](%[cache], %[stack]), %k[scratch]\n\t"
           "jae 87f\n\t"
           "movl %k[scratch], %c[lwm](%[cache], %[stack])\n\t"
           "87:\n\t"
           ".endif\n\t"
           ".if %c[count_hit]\n\t"
           "addq $1, %c[hits](%[cache])\n\t"
           ".endif\n\t"
           "movl %k[scratch], %c[count](%[cache], %[stack])\n\t"  // Commit.
           "83:\n\t"
           SYNCPOOL_RSEQ_ABORT_HANDLER
           : [result] "=&r"(result), [scratch] "=&r"(scratch), [cache] "=&r"(cache)
           : SYNCPOOL_RSEQ_OPERANDS, [hits] "i"(offsetof(CpuCache, hits)),
             [count] "i"(kCountOffset), [slots] "i"(kSlotsOffset),
             [lwm] "i"(offsetof(ClassStack, low_water)), [track] "i"(kLowWater ? 1 : 0),
             [count_hit] "i"(kCountHit ? 1 : 0)
           : "memory", "cc"
           : fail);
  return result;
fail:
  return nullptr;
}

// RseqPush()
//
// Pushes `block` onto the primary generation of the stack at `stack_offset` of the current
// CPU's cache. Returns false (keeping nothing) when the table holds no cache for the CPU or
// the stack is full. REQUIRES: as RseqPop().
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool RseqPush(const std::atomic<CpuCache*>* table,
                                                  size_t stack_offset, void* block) {
  uint64_t slots;
  uint64_t scratch;
  char* cache;
  asm volatile goto(SYNCPOOL_RSEQ_ENTER
           "movl %c[count](%[cache], %[stack]), %k[scratch]\n\t"
           "cmpl %c[capacity](%[cache], %[stack]), %k[scratch]\n\t"
           "jae %l[fail]\n\t"
           "movq %c[slots](%[cache], %[stack]), %[slots_ptr]\n\t"
           "movq %[block], (%[slots_ptr], %[scratch], 8)\n\t"  // Harmless if restarted.
           "addl $1, %k[scratch]\n\t"
           "movl %k[scratch], %c[count](%[cache], %[stack])\n\t"  // Commit.
           "83:\n\t"
           SYNCPOOL_RSEQ_ABORT_HANDLER
           : [slots_ptr] "=&r"(slots), [scratch] "=&r"(scratch), [cache] "=&r"(cache)
           : SYNCPOOL_RSEQ_OPERANDS, [block] "r"(block),
             [count] "i"(offsetof(ClassStack, primary_count)),
             [capacity] "i"(offsetof(ClassStack, capacity)),
             [slots] "i"(offsetof(ClassStack, primary))
           : "memory", "cc"
           : fail);
  return true;
fail:
  return false;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* RseqPopPrimary(const std::atomic<CpuCache*>* table,
                                                         size_t stack_offset) {
  return RseqPop<offsetof(ClassStack, primary_count), offsetof(ClassStack, primary), true>(
      table, stack_offset);
}

// RseqPopToMove()
//
// A pop of the primary generation that hands nobody a block: the slow path of a Put moving a
// batch to the TransferStack. It counts no hit and leaves the low-water mark alone.
inline void* RseqPopToMove(const std::atomic<CpuCache*>* table, size_t stack_offset) {
  return RseqPop<offsetof(ClassStack, primary_count), offsetof(ClassStack, primary), false,
                 false>(table, stack_offset);
}

inline void* RseqPopVictim(const std::atomic<CpuCache*>* table, size_t stack_offset) {
  return RseqPop<offsetof(ClassStack, victim_count), offsetof(ClassStack, victim), false>(
      table, stack_offset);
}

#endif  // SYNCPOOL_RSEQ_FAST_PATH

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_
