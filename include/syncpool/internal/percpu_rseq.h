// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/percpu_rseq.h
// -----------------------------------------------------------------------------
//
// Restartable sequences over the per-CPU caches (cpu_cache.h), on Linux x86-64 with the rseq
// area glibc (2.35 and later) registers for every thread. Not part of syncpool's API.
//
// A pop or push of one block on the current CPU's stack is one critical section that reads
// the column id, finds that column's stack in its class's row of the BlockCache's region (at
// row + (column << kClassStackShift): a shift, no load), and commits with a single store of the count
// (the slot of a push is written before the commit, where a restart makes the write harmless).
// If the thread is preempted, migrated or signalled inside the section, the kernel moves it to
// the abort handler, which restarts the section from the top. No lock, no atomic
// read-modify-write. The slow paths move a batch the same way (RseqPushBatch(),
// RseqPopBatchToMove()): the same head, a loop of copies, one store of the count.
//
// The column id: the rseq area's `mm_cid` where the kernel publishes it (Linux 6.3 and later;
// SYNCPOOL_CPU_ID=auto or concurrency), else its `cpu_id` (g_rseq_id_offset in cpu.h). Either
// serves because of what the kernel guarantees of both (Documentation/userspace-api/rseq and
// include/uapi/linux/rseq.h): at any moment no two running threads of the process hold the
// same value; a thread's value changes only while the thread is off its CPU (a preemption, a
// migration, a block), and the kernel writes the new value into the area on the way back to
// user space, the same step that moves a thread interrupted inside a critical section to its
// abort handler. So a sequence that commits ran, from its read of the id to its commit, as
// the only running thread holding that id, and every other thread that held it before or
// holds it after is outside the section of that column (restarted, or not yet there): the
// column is the sequence's own, as a CPU's stack is with `cpu_id`. What differs is only who
// may run on a column at other times, which the remote operation covers (below). The
// sequences also fail when `cpu_id` is negative, whatever `mm_cid` holds: glibc leaves
// `mm_cid` of an area the kernel did not register at whatever the memory held, so `cpu_id` is
// the only sign of an unregistered thread. mm_cid ids stay below the CPUs the process may use,
// which NumCpus() bounds; the CPU bound still applies.
//
// Protocol between local and remote operations. Each class's stack carries an
// `open_capacity` (cpu_cache.h) that local operations only read: a pop succeeds only when
// count - 1 < open_capacity, a push only when count < open_capacity. It is the stack's capacity
// while the cache is open to sequences and 0 while it is closed, which fails both.
//   - A cache is closed before it exists (the region is zero-filled), always in the locked
//     mode, and while a remote operation works on it. A sequence also fails on a CPU id at or
//     above g_rseq_cpu_limit (cpu.h): 0 until the rseq mode is decided and while the
//     sequences are held closed, and above any id when glibc could not register the thread's area (cpu_id is
//     then RSEQ_CPU_ID_REGISTRATION_FAILED, -2) or has none (syncpool's own area, whose
//     cpu_id is always -2: g_rseq_area_offset in cpu.h).
//   - Remote operations (sweeps, drains, and slow paths sent to another column) never run
//     these sequences on another CPU's cache. They take the cache's lock, set every class's
//     open_capacity to 0, and fence with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) on
//     that CPU (indexed by `cpu_id`), or on every CPU that runs a thread of the process
//     (indexed by `mm_cid`: the thread holding the column may run anywhere; FenceColumn()):
//     when the fence returns, every sequence that read an open capacity before the
//     stores has committed or been restarted, and a restarted or new one reads 0. So the
//     remote operation owns the cache until it stores the capacities back (release, under the
//     lock). A thread whose sequence fails on a closed class waits for the remote operation by
//     taking the lock (BlockCache::WaitAndOpen()).
//   - A cache is first opened under its lock, so that it cannot open in the middle of a remote
//     operation.
//   - Every sequence loads open_capacity BEFORE anything else of the stack (x86 does not
//     reorder loads with loads). A fence aborts only the sequences inside their critical
//     section when it reaches the CPU; a sequence that starts after the fence and then stalls
//     (an interrupt that does not reschedule restarts nothing) may see the remote operation
//     end and the cache reopen in the middle of it. Loaded first, open_capacity reads 0 for
//     such a sequence unless the cache had reopened already, and then everything it loads
//     after is what the remote operation left. Loaded after the count, it could read the
//     reopened capacity beside a count from before the operation, and commit that stale count
//     over an emptied stack.
//
// glibc owns the registration of the rseq area; syncpool never registers one. It only writes
// the area's `rseq_cs` field, as the rseq ABI intends. The area is the one at
// g_rseq_area_offset from the thread pointer (cpu.h), which is always an area of the thread:
// glibc's, which glibc reserves in every thread even when it does not register it (cpu_id =
// RSEQ_CPU_ID_REGISTRATION_FAILED), or, on a glibc without one (2.34), syncpool's own, which
// the kernel never sees (cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED forever). So the sequences
// may run on any x86-64 glibc, on every cache and in either mode: unregistered threads fail
// the CPU bound. SAFETY: they store into %fs:(g_rseq_area_offset + 8) before anything else, so
// InitRseqArea() must have run before the first one (it runs from an ELF constructor, and
// from every BlockCache's constructor).

#ifndef SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_
#define SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "syncpool/internal/percpu_abi.h"

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
// ThreadSanitizer, glibc registered its rseq area (RseqRegistered(); not on glibc 2.34, nor
// under GLIBC_TUNABLES=glibc.pthread.rseq=0 or valgrind), SYNCPOOL_RSEQ is not "0", and the
// process registered for membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ). Decided once per
// process (after InitRseqArea(), which it calls); when true, the decision opens the CPU ids to
// the sequences (AllowRseqCpus()).
bool RseqUsable();

// FenceColumn()
//
// Restarts every restartable sequence of this process that may be running on column `column`
// (those on that CPU when columns are CPU ids, all of them when they are concurrency ids), and
// orders this thread's earlier stores before whatever those CPUs run next.
// REQUIRES: RseqUsable().
void FenceColumn(int column);

// RseqIndexReason()
//
// What the sequences index columns by, and why, for Stats::mode_reason ("glibc registered
// rseq; columns by concurrency id (mm_cid)"). A string with static storage.
const char* RseqIndexReason();

// RseqOffsets
//
// Where a sequence finds the offsets of the thread's rseq area and of its column id. Both are
// constants once a sequence can run, so the compiler keeps them in registers across a loop of
// sequences (kInRegisters, the default). A caller that runs one sequence between a function's
// entry and a tail call that needs every argument register (the virtual do_allocate() and
// do_deallocate() of PoolResource) has one register too few for that, and would save one on
// the stack on every call: kAreaInSequence loads the area's offset inside the sequence instead,
// into a register the sequence needs only later. (What each costs: docs/benchmarks.md.)
enum class RseqOffsets { kInRegisters, kAreaInSequence };

#if SYNCPOOL_RSEQ_FAST_PATH

// A hook point inside the critical section, right after the first load of the stack, with
// its asm operands: empty unless the build defines both before this header.
#ifndef SYNCPOOL_RSEQ_HOOK
#define SYNCPOOL_RSEQ_HOOK ""
#define SYNCPOOL_RSEQ_HOOK_OPERANDS
#endif

#define SYNCPOOL_RSEQ_STR_(x) #x
#define SYNCPOOL_RSEQ_STR(x) SYNCPOOL_RSEQ_STR_(x)

// The common head of the sequences. Emits the critical-section descriptor (start 82, length up
// to the commit label 83, abort handler 84; in the __rseq_cs section, in the same COMDAT group
// as the function so that a discarded copy takes its descriptor along), arms it in this
// thread's rseq area at 80 (where the abort handler restarts), then, inside the section, reads
// the column id (at g_rseq_id_offset: `cpu_id` or `mm_cid`), leaves for the `fail` label unless
// it is below g_rseq_cpu_limit and the area's `cpu_id` says the kernel registered it (not
// negative), and leaves in %[cpu] the offset of that column's ClassStack from the row (%[row])
// of the class. `AREA` names where the area's offset is: the %[area] register, or %[n], into
// which the variant that loads it inside the sequence (RseqOffsets) first loads it.
#define SYNCPOOL_RSEQ_ENTER_AT(LOAD_AREA, AREA)              \
  ".pushsection __rseq_cs, \"aw?\"\n\t"                      \
  ".balign 32\n\t"                                           \
  "81:\n\t"                                                  \
  ".long 0x0, 0x0\n\t"                                       \
  ".quad 82f, (83f - 82f), 84f\n\t"                          \
  ".popsection\n\t"                                          \
  "80:\n\t"                                                  \
  LOAD_AREA                                                  \
  "leaq 81b(%%rip), %[cpu]\n\t"                              \
  "movq %[cpu], %%fs:%c[cs_off](" AREA ")\n\t"               \
  "82:\n\t"                                                  \
  "movl %%fs:(%[id]), %k[cpu]\n\t"                           \
  "cmpl %[limit], %k[cpu]\n\t"                               \
  "jae %l[fail]\n\t"                                         \
  "cmpl $0, %%fs:%c[cpu_off](" AREA ")\n\t"                  \
  "js %l[fail]\n\t"                                          \
  "shlq %[stack_shift], %[cpu]\n\t"
#define SYNCPOOL_RSEQ_ENTER SYNCPOOL_RSEQ_ENTER_AT("", "%[area]")
#define SYNCPOOL_RSEQ_ENTER_LOADING_AREA SYNCPOOL_RSEQ_ENTER_AT("movq %[area], %[n]\n\t", "%[n]")

// The abort handler, preceded by the signature glibc registered the area with: restarts.
// (kRseqCpuIdOffset, kRseqCsOffset and SYNCPOOL_RSEQ_SIG come from cpu.h.)
#define SYNCPOOL_RSEQ_ABORT_HANDLER                          \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                 \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                               \
  ".long " SYNCPOOL_RSEQ_STR(SYNCPOOL_RSEQ_SIG) "\n\t"       \
  "84:\n\t"                                                  \
  "jmp 80b\n\t"                                              \
  ".popsection\n\t"

// The operands SYNCPOOL_RSEQ_ENTER uses; AREA_CONSTRAINT is "r" (SYNCPOOL_RSEQ_ENTER) or "m"
// (SYNCPOOL_RSEQ_ENTER_LOADING_AREA).
#define SYNCPOOL_RSEQ_OPERANDS_WITH(AREA_CONSTRAINT)                                     \
  [area] AREA_CONSTRAINT(g_rseq_area_offset), [id] "r"(g_rseq_id_offset),              \
      [limit] "m"(g_rseq_cpu_limit), [row] "r"(row),                                      \
      [stack_shift] "i"(kClassStackShift), [cs_off] "i"(kRseqCsOffset),                 \
      [cpu_off] "i"(kRseqCpuIdOffset), [count] "i"(offsetof(ClassStack, primary_count)), \
      [open] "i"(offsetof(ClassStack, open_capacity)) SYNCPOOL_RSEQ_HOOK_OPERANDS
#define SYNCPOOL_RSEQ_OPERANDS SYNCPOOL_RSEQ_OPERANDS_WITH("r")

// The body of a pop, after SYNCPOOL_RSEQ_ENTER.
#define SYNCPOOL_RSEQ_POP_BODY                                                      \
  "movl %c[open](%[row], %[cpu]), %k[result]\n\t" /* open_capacity first: above. */ \
  SYNCPOOL_RSEQ_HOOK                                                                \
  "movl %c[gen_count](%[row], %[cpu]), %k[n]\n\t"                                   \
  "subl $1, %k[n]\n\t"                                                              \
  "cmpl %k[result], %k[n]\n\t"                                                      \
  "jae %l[fail]\n\t"                                                                \
  "movq %c[slots](%[row], %[cpu]), %[result]\n\t"                                   \
  "movq (%[result], %[n], 8), %[result]\n\t"                                        \
  ".if %c[track]\n\t"                                                               \
  "cmpl %c[lwm](%[row], %[cpu]), %k[n]\n\t"                                         \
  "jae 87f\n\t"                                                                     \
  "movl %k[n], %c[lwm](%[row], %[cpu])\n\t"                                         \
  "87:\n\t"                                                                         \
  ".endif\n\t"                                                                      \
  ".if %c[count_hit]\n\t"                                                           \
  "addq $1, %c[hits](%[row], %[cpu])\n\t"                                           \
  ".endif\n\t"                                                                      \
  "movl %k[n], %c[gen_count](%[row], %[cpu])\n\t" /* Commit. */                     \
  "83:\n\t" SYNCPOOL_RSEQ_ABORT_HANDLER
#define SYNCPOOL_RSEQ_POP_OPERANDS                                                        \
  [hits] "i"(offsetof(ClassStack, hits)), [gen_count] "i"(kCountOffset),                 \
      [slots] "i"(kSlotsOffset), [lwm] "i"(offsetof(ClassStack, low_water)),             \
      [track] "i"(kLowWater ? 1 : 0), [count_hit] "i"(kCountHit ? 1 : 0)

// The body of a push, after SYNCPOOL_RSEQ_ENTER.
#define SYNCPOOL_RSEQ_PUSH_BODY                                                    \
  "movl %c[open](%[row], %[cpu]), %k[slots_ptr]\n\t" /* open_capacity first. */    \
  SYNCPOOL_RSEQ_HOOK                                                               \
  "movl %c[count](%[row], %[cpu]), %k[n]\n\t"                                      \
  "cmpl %k[slots_ptr], %k[n]\n\t"                                                  \
  "jae %l[fail]\n\t"                                                               \
  "movq %c[slots](%[row], %[cpu]), %[slots_ptr]\n\t"                               \
  "movq %[block], (%[slots_ptr], %[n], 8)\n\t" /* Harmless if restarted. */        \
  "addl $1, %k[n]\n\t"                                                             \
  "movl %k[n], %c[count](%[row], %[cpu])\n\t" /* Commit. */                        \
  "83:\n\t" SYNCPOOL_RSEQ_ABORT_HANDLER


// RseqPop()
//
// Pops the top block of the current CPU's stack in the class row `row` (BlockCache::Row()),
// in the generation whose count and slots lie at kCountOffset and
// kSlotsOffset in ClassStack (the primary or the victim generation: both are bounded by
// open_capacity, since their capacities are equal). Returns nullptr when the cache is closed
// or the stack is empty. With kLowWater, it also lowers the stack's low_water to the new count
// (inside the section, so only on this CPU); with kCountHit it counts a hit.
//
// RseqPopOr() returns `on_hit(block)`, or `otherwise()` instead of nullptr: the sequence jumps
// straight to that call (asm goto), so that a caller whose fallback is its slow path tests
// nothing on success.
template <size_t kCountOffset, size_t kSlotsOffset, bool kLowWater, bool kCountHit,
          RseqOffsets kOffsets = RseqOffsets::kInRegisters, typename OnHit, typename Otherwise>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline auto RseqPopOr(char* row, OnHit on_hit, Otherwise otherwise) {
  void* result;
  uint64_t n;
  uint64_t cpu;
  if constexpr (kOffsets == RseqOffsets::kInRegisters) {
    asm volatile goto(SYNCPOOL_RSEQ_ENTER SYNCPOOL_RSEQ_POP_BODY
                      : [result] "=&r"(result), [n] "=&r"(n), [cpu] "=&r"(cpu)
                      : SYNCPOOL_RSEQ_OPERANDS, SYNCPOOL_RSEQ_POP_OPERANDS
                      : "memory", "cc"
                      : fail);
  } else {
    asm volatile goto(SYNCPOOL_RSEQ_ENTER_LOADING_AREA SYNCPOOL_RSEQ_POP_BODY
                      : [result] "=&r"(result), [n] "=&r"(n), [cpu] "=&r"(cpu)
                      : SYNCPOOL_RSEQ_OPERANDS_WITH("m"), SYNCPOOL_RSEQ_POP_OPERANDS
                      : "memory", "cc"
                      : fail);
  }
  return on_hit(result);
fail:
  return otherwise();
}

template <size_t kCountOffset, size_t kSlotsOffset, bool kLowWater, bool kCountHit = true>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* RseqPop(char* row) {
  return RseqPopOr<kCountOffset, kSlotsOffset, kLowWater, kCountHit>(
      row, [](void* block) { return block; }, []() -> void* { return nullptr; });
}

// RseqPush()
//
// Pushes `block` onto the primary generation of the current CPU's stack in the class row
// `row`. Returns false (keeping nothing) when the cache is closed or the stack is full.
// REQUIRES: as RseqPop().
template <RseqOffsets kOffsets = RseqOffsets::kInRegisters>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool RseqPush(char* row, void* block) {
  uint64_t slots;
  uint64_t n;
  uint64_t cpu;
  if constexpr (kOffsets == RseqOffsets::kInRegisters) {
    asm volatile goto(SYNCPOOL_RSEQ_ENTER SYNCPOOL_RSEQ_PUSH_BODY
                      : [slots_ptr] "=&r"(slots), [n] "=&r"(n), [cpu] "=&r"(cpu)
                      : SYNCPOOL_RSEQ_OPERANDS, [block] "r"(block),
                        [slots] "i"(offsetof(ClassStack, primary))
                      : "memory", "cc"
                      : fail);
  } else {
    asm volatile goto(SYNCPOOL_RSEQ_ENTER_LOADING_AREA SYNCPOOL_RSEQ_PUSH_BODY
                      : [slots_ptr] "=&r"(slots), [n] "=&r"(n), [cpu] "=&r"(cpu)
                      : SYNCPOOL_RSEQ_OPERANDS_WITH("m"), [block] "r"(block),
                        [slots] "i"(offsetof(ClassStack, primary))
                      : "memory", "cc"
                      : fail);
  }
  return true;
fail:
  return false;
}

// RseqCountMiss()
//
// Adds 1 to the `misses` of the current CPU's stack in the class row `row`, as one restartable
// sequence whose commit is the store of the sum: exact, without an atomic read-modify-write.
// Returns false, counting nothing, when that CPU's cache is closed (not created yet, the locked
// mode, or a remote operation under way: the caller then counts elsewhere).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool RseqCountMiss(char* row) {
  uint64_t n;
  uint64_t cpu;
  asm volatile goto(SYNCPOOL_RSEQ_ENTER
           "cmpl $0, %c[open](%[row], %[cpu])\n\t"
           "je %l[fail]\n\t"
           "movq %c[misses](%[row], %[cpu]), %[n]\n\t"
           "addq $1, %[n]\n\t"
           "movq %[n], %c[misses](%[row], %[cpu])\n\t"  // Commit.
           "83:\n\t"
           SYNCPOOL_RSEQ_ABORT_HANDLER
           : [n] "=&r"(n), [cpu] "=&r"(cpu)
           : SYNCPOOL_RSEQ_OPERANDS, [misses] "i"(offsetof(ClassStack, misses))
           : "memory", "cc"
           : fail);
  return true;
fail:
  return false;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* RseqPopPrimary(char* row) {
  return RseqPop<offsetof(ClassStack, primary_count), offsetof(ClassStack, primary), true>(row);
}

template <RseqOffsets kOffsets = RseqOffsets::kInRegisters, typename OnHit, typename Otherwise>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline auto RseqPopPrimaryOr(char* row, OnHit on_hit,
                                                          Otherwise otherwise) {
  return RseqPopOr<offsetof(ClassStack, primary_count), offsetof(ClassStack, primary), true,
                   true, kOffsets>(row, on_hit, otherwise);
}

inline void* RseqPopVictim(char* row) {
  return RseqPop<offsetof(ClassStack, victim_count), offsetof(ClassStack, victim), false>(row);
}

// RseqPushBatch()
//
// Pushes `blocks[0]`, then `blocks[1]`, ... (so the last one pushed ends on top) onto the
// primary generation of the current CPU's stack in the class row `row`, as many as fit below
// open_capacity and at most `n`, in one critical section: the slots are written first (a
// restart makes those writes harmless, as a push's), then one store of the count commits them
// all. Returns how many it pushed: 0, keeping nothing, when the cache is closed or the stack
// full. For slow paths that hand a CPU a batch (a refill, the TransferStack's blocks): one
// sequence instead of one per block. Not for the inline paths (a loop inside).
// REQUIRES: n >= 1; as RseqPop().
inline uint32_t RseqPushBatch(char* row, void* const* blocks, uint32_t n) {
  // Few registers, so that the test seam's hook (its operands) fits in every build: `n` and
  // the count pushed stay in memory, the copy counts down, and the commit reads the stack's
  // count again (no other sequence can have changed it since: that would have restarted this
  // one).
  uint32_t pushed = 0;
  uint64_t room;
  uint64_t slots;
  uint64_t tmp;
  uint64_t cpu;
  asm volatile goto(SYNCPOOL_RSEQ_ENTER
                    "movl %c[open](%[row], %[cpu]), %k[room]\n\t" /* open_capacity first. */
                    SYNCPOOL_RSEQ_HOOK
                    "movl %c[count](%[row], %[cpu]), %k[tmp]\n\t"
                    "subl %k[tmp], %k[room]\n\t" /* room = open - count, */
                    "jbe %l[fail]\n\t"            /* failing when count >= open. */
                    "cmpl %[want], %k[room]\n\t"
                    "cmoval %[want], %k[room]\n\t" /* room = min(room, n) */
                    "movl %k[room], %[pushed]\n\t"
                    "movq %c[slots](%[row], %[cpu]), %[slots_ptr]\n\t"
                    "leaq (%[slots_ptr], %[tmp], 8), %[slots_ptr]\n\t"
                    "85:\n\t"
                    "subl $1, %k[room]\n\t"
                    "movq (%[blocks], %[room], 8), %[tmp]\n\t"
                    "movq %[tmp], (%[slots_ptr], %[room], 8)\n\t" /* Harmless if restarted. */
                    "jnz 85b\n\t"
                    "movl %c[count](%[row], %[cpu]), %k[tmp]\n\t"
                    "addl %[pushed], %k[tmp]\n\t"
                    "movl %k[tmp], %c[count](%[row], %[cpu])\n\t" /* Commit. */
                    "83:\n\t" SYNCPOOL_RSEQ_ABORT_HANDLER
                    : [room] "=&r"(room), [slots_ptr] "=&r"(slots), [tmp] "=&r"(tmp),
                      [cpu] "=&r"(cpu), [pushed] "+m"(pushed)
                    : SYNCPOOL_RSEQ_OPERANDS, [blocks] "r"(blocks), [want] "m"(n),
                      [slots] "i"(offsetof(ClassStack, primary))
                    : "memory", "cc"
                    : fail);
  return pushed;
fail:
  return 0;
}
// RseqPopBatchToMove()
//
// Pops up to `n` blocks off the top of the primary generation of the current CPU's stack in
// the class row `row` into `out` (the topmost last), in one critical section committed by one
// store of the count; `out` is written before the commit (a restart writes it again). Returns
// how many: 0 when the cache is closed or the stack empty. It counts no hit and leaves the
// low-water mark alone: the slow path of a Put making room. Not for the
// inline paths (a loop inside). REQUIRES: n >= 1; as RseqPop().
inline uint32_t RseqPopBatchToMove(char* row, void** out, uint32_t n) {
  // Few registers, as RseqPushBatch().
  uint32_t popped = 0;
  uint64_t src;
  uint64_t k;
  uint64_t tmp;
  uint64_t cpu;
  asm volatile goto(SYNCPOOL_RSEQ_ENTER
                    "movl %c[open](%[row], %[cpu]), %k[src]\n\t" /* open_capacity first. */
                    SYNCPOOL_RSEQ_HOOK
                    "movl %c[count](%[row], %[cpu]), %k[k]\n\t"
                    "leal -1(%q[k]), %k[tmp]\n\t" /* As a pop: count - 1 < open. */
                    "cmpl %k[src], %k[tmp]\n\t"
                    "jae %l[fail]\n\t"
                    "movl %k[k], %k[tmp]\n\t"      /* The count, */
                    "cmpl %[want], %k[k]\n\t"
                    "cmoval %[want], %k[k]\n\t"    /* k = min(count, n), */
                    "subl %k[k], %k[tmp]\n\t"      /* the new count. */
                    "movl %k[k], %[popped]\n\t"
                    "movq %c[slots](%[row], %[cpu]), %[src]\n\t"
                    "leaq (%[src], %[tmp], 8), %[src]\n\t"
                    "85:\n\t"
                    "subl $1, %k[k]\n\t"
                    "movq (%[src], %[k], 8), %[tmp]\n\t"
                    "movq %[tmp], (%[out], %[k], 8)\n\t"
                    "jnz 85b\n\t"
                    "movl %c[count](%[row], %[cpu]), %k[tmp]\n\t"
                    "subl %[popped], %k[tmp]\n\t"
                    "movl %k[tmp], %c[count](%[row], %[cpu])\n\t" /* Commit. */
                    "83:\n\t" SYNCPOOL_RSEQ_ABORT_HANDLER
                    : [src] "=&r"(src), [k] "=&r"(k), [tmp] "=&r"(tmp), [cpu] "=&r"(cpu),
                      [popped] "+m"(popped)
                    : SYNCPOOL_RSEQ_OPERANDS, [out] "r"(out), [want] "m"(n),
                      [slots] "i"(offsetof(ClassStack, primary))
                    : "memory", "cc"
                    : fail);
  return popped;
fail:
  return 0;
}

#endif  // SYNCPOOL_RSEQ_FAST_PATH

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_PERCPU_RSEQ_H_
