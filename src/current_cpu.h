// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Which cache a slow path works on: the calling thread's CPU, or, in the rseq mode, the column
// it must work on as a remote operation. Not installed: the inline paths never ask; they read
// the rseq area themselves (percpu_rseq.h) or use their thread's slot (thread_slots.h). Both
// answers honour a test's fake CPU id (src/fake_cpu.h).

#ifndef SYNCPOOL_SRC_CURRENT_CPU_H_
#define SYNCPOOL_SRC_CURRENT_CPU_H_

#include <atomic>

#include "absl/base/optimization.h"
#include "src/fake_cpu.h"
#include "src/cpu.h"
#include "syncpool/internal/percpu_rseq.h"

namespace syncpool {
namespace internal {

// CurrentCpu()
//
// The CPU the caller is running on (or its fake CPU in a test), in [0, NumCpus()).
inline int CurrentCpu() {
  if (ABSL_PREDICT_FALSE(g_fake_cpu_users.load(std::memory_order_relaxed) != 0)) {
    const int fake = FakeCpuOfThisThread();
    if (fake >= 0) return fake;
  }
  return RealCurrentCpu();
}

// RemoteCpuOfThisThread()
//
// For a cache in the rseq mode with `num_cpus` columns: the column the calling thread must
// work on as a remote operation, or -1 when the sequences serve it on its own column
// (RseqColumnId()). That is its fake CPU in a test; or, when the sequences would refuse this
// thread (a column id at or beyond g_rseq_cpu_limit, which is 0 while a test fakes CPU ids,
// or an rseq area the kernel did not register for it), the column its CPU id wraps to.
// Inline: every slow path of the rseq mode asks it first.
inline int RemoteCpuOfThisThread(int num_cpus) {
  if (g_fake_cpu_users.load(std::memory_order_relaxed) != 0) {
    if (const int fake = FakeCpuOfThisThread(); fake >= 0) return fake;
  }
#if SYNCPOOL_RSEQ_FAST_PATH
  if (RseqColumnId() < g_rseq_cpu_limit.load(std::memory_order_relaxed)) return -1;
#endif
  return RealCurrentCpu() % num_cpus;
}

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_CURRENT_CPU_H_
