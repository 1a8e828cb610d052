// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Whether the restartable-sequence fast path can be used, and the fence remote operations use.

#include "syncpool/internal/percpu_rseq.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "src/cpu.h"
#include "src/option_table.h"

namespace syncpool {
namespace internal {
namespace {

long Membarrier(int cmd, unsigned flags, int cpu) {
  return syscall(__NR_membarrier, cmd, flags, cpu);
}

bool DecideRseq() {
  InitRseqArea();
#if SYNCPOOL_RSEQ_FAST_PATH
  if (!RseqRegistered()) return false;  // No area registered (glibc 2.34, tunable, valgrind).
  if (ProcessOption(kOptRseq) == 0) return false;
  const long supported = Membarrier(MEMBARRIER_CMD_QUERY, 0, 0);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) == 0) return false;
  if (Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) return false;
  // The columns' index, chosen before AllowRseqCpus() lets any sequence pass its bound.
  if (ProcessOption(kOptCpuId) != kCpuIdCpu && KernelPublishesMmCid()) {
    IndexRseqByConcurrencyId();
  }
  AllowRseqCpus();
  return true;
#else
  return false;
#endif
}

// Whether the kernel takes MEMBARRIER_CMD_FLAG_CPU (5.10 and later); cleared on EINVAL.
std::atomic<bool> g_cpu_flag_works{true};

}  // namespace

#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
RseqWindow g_rseq_window;
#endif

bool RseqUsable() {
  static const bool usable = DecideRseq();
  return usable;
}

const char* RseqIndexReason() {
  if (RseqIndexedByConcurrencyId()) {
    return "glibc registered rseq; columns by concurrency id (mm_cid)";
  }
  if (ProcessOption(kOptCpuId) == kCpuIdCpu) {
    return "glibc registered rseq; columns by CPU id (SYNCPOOL_CPU_ID=cpu)";
  }
  return "glibc registered rseq; columns by CPU id (the kernel publishes no mm_cid)";
}

// Restarts the sequences of this process on `cpu`, or on every CPU for -1 (see FenceColumn()).
static void FenceCpu(int cpu) {
  // A fence that cannot be made would leave sequences running against a remote operation:
  // there is no safe way on, so it is fatal. Registration is inherited across fork(), but a
  // registration lost anyway (EPERM) is renewed once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (cpu >= 0 && g_cpu_flag_works.load(std::memory_order_relaxed)) {
      if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, cpu) == 0) {
        return;
      }
      if (errno == EINVAL) {
        // No per-CPU targeting on this kernel (before 5.10): fence every CPU instead, which
        // is always correct.
        g_cpu_flag_works.store(false, std::memory_order_relaxed);
      }
    }
    if ((cpu < 0 || !g_cpu_flag_works.load(std::memory_order_relaxed)) &&
        Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0) {
      return;
    }
    if (errno != EPERM ||
        Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) {
      break;
    }
  }
  std::fprintf(stderr, "syncpool: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) failed: %s\n",
               std::strerror(errno));
  std::abort();
}

void FenceColumn(int column) {
  // Indexed by mm_cid, the thread that holds `column` may run on any CPU: fence them all (the
  // kernel interrupts only the CPUs that run a thread of this process).
  FenceCpu(RseqIndexedByConcurrencyId() ? -1 : column);
}

}  // namespace internal
}  // namespace syncpool
