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
// the CPU id, finds that CPU's cache, checks it is not stopped, and commits with a single store
// of the stack's count (the slot of a push is written before the commit, where a restart makes
// the write harmless). If the thread is preempted, migrated or signalled inside the section,
// the kernel moves it to the abort handler, which restarts the section from the top. No lock,
// no atomic read-modify-write.
//
// Remote operations (sweeps, drains, steals, and fake-CPU operations in tests) never run
// these sequences on another CPU's cache. They take the cache's lock, set `stopped`, and fence
// with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) on that CPU: when the fence returns,
// every sequence that started before `stopped` was set has committed or been restarted, and a
// restarted or new one sees `stopped` and leaves for the slow path, which waits for the lock.
// So while `stopped` is set, the remote operation owns the cache. Clearing `stopped` (a
// release store, under the lock) hands it back.
//
// glibc owns the registration of the rseq area; syncpool never registers one. It only writes
// the area's `rseq_cs` field, as the rseq ABI intends.

#ifndef SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_
#define SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

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
// the CPU id and leaves for 85 unless that CPU has a cache below `num_cpus` that is not
// stopped. Leaves %[stack] pointing at the ClassStack and %[cache] at the CpuCache.
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
  "cmpl %k[num_cpus], %k[scratch]\n\t"                       \
  "jae 85f\n\t"                                              \
  "movq (%[caches], %[scratch], 8), %[cache]\n\t"            \
  "testq %[cache], %[cache]\n\t"                             \
  "jz 85f\n\t"                                               \
  "cmpb $0, %c[stopped](%[cache])\n\t"                       \
  "jnz 85f\n\t"                                              \
  "leaq (%[cache], %[stack_off]), %[stack]\n\t"

// The abort handler, preceded by the signature glibc registered the area with: restarts.
#define SYNCPOOL_RSEQ_ABORT_HANDLER                          \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                 \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                               \
  ".long " SYNCPOOL_RSEQ_STR(RSEQ_SIG) "\n\t"                \
  "84:\n\t"                                                  \
  "jmp 80b\n\t"                                              \
  ".popsection\n\t"

// The operands SYNCPOOL_RSEQ_ENTER uses.
#define SYNCPOOL_RSEQ_OPERANDS                                                        \
  [area] "r"(__rseq_offset), [caches] "r"(caches), [num_cpus] "r"(num_cpus),          \
      [stack_off] "r"(stack_offset), [cs_off] "i"(kRseqCsOffset),                     \
      [cpu_off] "i"(kRseqCpuIdOffset), [stopped] "i"(offsetof(CpuCache, stopped))

// RseqPop()
//
// Pops the top block of the stack at `stack_offset` (CpuCache::StackOffset()) of the current
// CPU's cache, in the generation whose count and slots lie at kCountOffset and kSlotsOffset in
// ClassStack. Returns nullptr when the CPU id is not below `num_cpus` (the entries of
// `caches`), the CPU has no cache yet, its cache is stopped, or the stack is empty.
// REQUIRES: RseqUsable().
template <size_t kCountOffset, size_t kSlotsOffset>
inline void* RseqPop(std::atomic<CpuCache*>* caches, int num_cpus, size_t stack_offset) {
  void* result;
  uint64_t scratch;
  char* cache;
  char* stack;
  asm volatile(SYNCPOOL_RSEQ_ENTER
               "movl %c[count](%[stack]), %k[scratch]\n\t"
               "testl %k[scratch], %k[scratch]\n\t"
               "jz 85f\n\t"
               "movq %c[slots](%[stack]), %[result]\n\t"
               "movq -8(%[result], %[scratch], 8), %[result]\n\t"
               "subl $1, %k[scratch]\n\t"
               "addq $1, %c[hits](%[cache])\n\t"
               "movl %k[scratch], %c[count](%[stack])\n\t"  // Commit.
               "83:\n\t"
               "jmp 86f\n\t"
               SYNCPOOL_RSEQ_ABORT_HANDLER
               "85:\n\t"
               "xorl %k[result], %k[result]\n\t"
               "86:\n\t"
               : [result] "=&r"(result), [scratch] "=&r"(scratch), [cache] "=&r"(cache),
                 [stack] "=&r"(stack)
               : SYNCPOOL_RSEQ_OPERANDS, [hits] "i"(offsetof(CpuCache, hits)),
                 [count] "i"(kCountOffset), [slots] "i"(kSlotsOffset)
               : "memory", "cc");
  return result;
}

// RseqPush()
//
// Pushes `block` onto the primary generation of the stack at `stack_offset` of the current
// CPU's cache. Returns false (keeping nothing) when the CPU id is out of range, the CPU has no
// cache yet, its cache is stopped, or the stack is full. REQUIRES: as RseqPop().
inline bool RseqPush(std::atomic<CpuCache*>* caches, int num_cpus, size_t stack_offset,
                     void* block) {
  uint64_t result;
  uint64_t scratch;
  char* cache;
  char* stack;
  asm volatile(SYNCPOOL_RSEQ_ENTER
               "movl %c[count](%[stack]), %k[scratch]\n\t"
               "cmpl %c[capacity](%[stack]), %k[scratch]\n\t"
               "jae 85f\n\t"
               "movq %c[slots](%[stack]), %[result]\n\t"
               "movq %[block], (%[result], %[scratch], 8)\n\t"  // Harmless if restarted.
               "addl $1, %k[scratch]\n\t"
               "movl %k[scratch], %c[count](%[stack])\n\t"  // Commit.
               "83:\n\t"
               "movl $1, %k[result]\n\t"
               "jmp 86f\n\t"
               SYNCPOOL_RSEQ_ABORT_HANDLER
               "85:\n\t"
               "xorl %k[result], %k[result]\n\t"
               "86:\n\t"
               : [result] "=&r"(result), [scratch] "=&r"(scratch), [cache] "=&r"(cache),
                 [stack] "=&r"(stack)
               : SYNCPOOL_RSEQ_OPERANDS, [block] "r"(block),
                 [count] "i"(offsetof(ClassStack, primary_count)),
                 [capacity] "i"(offsetof(ClassStack, capacity)),
                 [slots] "i"(offsetof(ClassStack, primary))
               : "memory", "cc");
  return result != 0;
}

inline void* RseqPopPrimary(std::atomic<CpuCache*>* caches, int num_cpus, size_t stack_offset) {
  return RseqPop<offsetof(ClassStack, primary_count), offsetof(ClassStack, primary)>(
      caches, num_cpus, stack_offset);
}

inline void* RseqPopVictim(std::atomic<CpuCache*>* caches, int num_cpus, size_t stack_offset) {
  return RseqPop<offsetof(ClassStack, victim_count), offsetof(ClassStack, victim)>(
      caches, num_cpus, stack_offset);
}

#endif  // SYNCPOOL_RSEQ_FAST_PATH

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_
