// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The test seams, not installed. This header is force-included (-include) into every source
// of the library's test-seam variant (Bazel's //:syncpool_rseq_window_for_test, CMake's
// syncpool_rseq_window_for_test) and of the three tests that link it, and into nothing else:
//   - tests/rseq_window_test.cc: the load order of the restartable sequences (a pop or push
//     stalled inside its critical section across a whole remote operation commits nothing);
//   - tests/thread_window_test.cc: the per-thread mode's protocol, step by step;
//   - tests/fork_window_test.cc: a fork() while a cache joins its sweeper.
// It defines the hook points that the installed headers leave empty (SYNCPOOL_RSEQ_HOOK in
// percpu_rseq.h, SYNCPOOL_SLOT_HOOK and SYNCPOOL_SLOT_LEFT_HOOK in thread_slots.h) and
// declares what the hooks use. Their definitions are in src/percpu_rseq.cc,
// src/thread_slots.cc and src/block_cache.cc, under SYNCPOOL_RSEQ_TEST_WINDOW, which this
// header defines; src/block_cache_remote.h calls the remote operation's hooks.

#ifndef SYNCPOOL_SRC_TEST_SEAMS_H_
#define SYNCPOOL_SRC_TEST_SEAMS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#define SYNCPOOL_RSEQ_TEST_WINDOW 1

namespace syncpool {
namespace internal {

// The sequences (percpu_rseq.h): while g_rseq_window_armed is nonzero, every sequence, right
// after its first load of the stack, adds 1 to g_rseq_window_entered and spins inside its
// critical section until g_rseq_window_go is nonzero. It stands for a thread that stalls there
// without being rescheduled (an interrupt), which restarts nothing.
// One object, so that the hook needs one register for all three (the batch sequences need
// most of the others).
struct RseqWindow {
  std::atomic<uint32_t> armed{0};
  std::atomic<uint32_t> entered{0};
  std::atomic<uint32_t> go{0};
};
extern RseqWindow g_rseq_window;
inline std::atomic<uint32_t>& g_rseq_window_armed = g_rseq_window.armed;
inline std::atomic<uint32_t>& g_rseq_window_entered = g_rseq_window.entered;
inline std::atomic<uint32_t>& g_rseq_window_go = g_rseq_window.go;

// The per-thread mode's owner (thread_slots.h): while g_thread_window_point is 0 or 1, the
// owner's next inline operation stalls at that point (0: before step 1; 1: after step 3,
// before the count is read) after adding 1 to g_thread_window_entered, until
// g_thread_window_go is nonzero; the point is then disarmed, and g_thread_window_left counts
// the operation's step 5.
extern std::atomic<int> g_thread_window_point;
extern std::atomic<uint32_t> g_thread_window_entered;
extern std::atomic<uint32_t> g_thread_window_go;
extern std::atomic<uint32_t> g_thread_window_left;

inline void ThreadWindow(int point) {
  int armed = point;
  if (!g_thread_window_point.compare_exchange_strong(armed, -1)) return;
  g_thread_window_entered.fetch_add(1);
  while (g_thread_window_go.load() == 0) {
  }
  g_thread_window_left.store(0);
  g_thread_window_point.store(-2);  // Counts this operation's step 5.
}

inline void ThreadLeft() {
  int counting = -2;
  if (g_thread_window_point.compare_exchange_strong(counting, -1)) g_thread_window_left.store(1);
}

// The remote operation (src/block_cache_remote.h): called in the rseq mode right after it
// closed and fenced `cpu`'s cache, before its work; in the per-thread mode also while it waits
// for the column's owner to leave an inline operation (each spin), and once it may work,
// before its work.
extern void (*g_remote_after_fence_for_test)(int cpu);
extern void (*g_remote_waiting_for_test)(int cpu);
extern void (*g_remote_before_op_for_test)(int cpu);

// A cache joining its sweeper (src/block_cache.cc, CacheOf()): called with the registrations'
// lock held, before Register().
extern void (*g_registering_for_test)();

}  // namespace internal
}  // namespace syncpool

// The sequences' hook: inside the critical section, right after its first load of the stack.
#define SYNCPOOL_RSEQ_HOOK                  \
  "cmpl $0, %c[w_armed](%[w])\n\t"          \
  "je 89f\n\t"                              \
  "addl $1, %c[w_entered](%[w])\n\t"        \
  "88:\n\t"                                 \
  "pause\n\t"                               \
  "cmpl $0, %c[w_go](%[w])\n\t"             \
  "je 88b\n\t"                              \
  "89:\n\t"
#define SYNCPOOL_RSEQ_HOOK_OPERANDS                                                   \
  , [w] "r"(&::syncpool::internal::g_rseq_window),                                    \
      [w_armed] "i"(offsetof(::syncpool::internal::RseqWindow, armed)),               \
      [w_entered] "i"(offsetof(::syncpool::internal::RseqWindow, entered)),           \
      [w_go] "i"(offsetof(::syncpool::internal::RseqWindow, go))
// The per-thread owner's hooks.
#define SYNCPOOL_SLOT_HOOK(point) ::syncpool::internal::ThreadWindow(point)
#define SYNCPOOL_SLOT_LEFT_HOOK() ::syncpool::internal::ThreadLeft()

#endif  // SYNCPOOL_SRC_TEST_SEAMS_H_
