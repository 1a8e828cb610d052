// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/cpu.h
// -----------------------------------------------------------------------------
//
// CPU identity: which CPU the calling thread runs on, and how many CPU ids can occur. This is
// the bottom layer of the per-CPU caches. Not part of syncpool's API; tests reach the fake-CPU
// seam through syncpool/testing/fake_cpu.h.
//
// CurrentCpu() reads `cpu_id` from the restartable-sequences area glibc (2.35 and later)
// registers for every thread: one load from the thread pointer. Where that area is not
// registered (`__rseq_size == 0`, for example under GLIBC_TUNABLES=glibc.pthread.rseq=0 or
// valgrind) it falls back to sched_getcpu(). syncpool never registers an area of its own.
//
// The answer is a hint: the thread may migrate right after reading it. Every user of the value
// must stay correct when it is stale (the locked per-CPU caches are: they lock the cache they
// picked, whichever CPU that belongs to).

#ifndef SYNCPOOL_INTERNAL_CPU_H_
#define SYNCPOOL_INTERNAL_CPU_H_

#include <atomic>
#include <cstdint>

#include "absl/base/optimization.h"

#if defined(__x86_64__) && defined(__linux__) && __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define SYNCPOOL_HAVE_GLIBC_RSEQ 1
#else
#define SYNCPOOL_HAVE_GLIBC_RSEQ 0
#endif

namespace syncpool {
namespace internal {

// NumCpus()
//
// The number of CPU ids that can occur (the configured CPUs, not the online ones), at least 1.
// Every id that CurrentCpu() returns is below it.
int NumCpus();

// Nonzero while some thread uses a fake CPU id (see syncpool/testing/fake_cpu.h). Read with a
// relaxed load on every CurrentCpu(); it stays zero outside tests.
extern std::atomic<int> g_fake_cpu_users;

// The fake CPU id of this thread, or -1.
int FakeCpuOfThisThread();

// The CPU ids the restartable sequences serve are those below g_rseq_cpu_limit (see
// percpu_rseq.h): NumCpus() once AllowRseqCpus() ran (RseqUsable() calls it when it decides
// for the sequences), 0 before, and 0 while any thread uses a fake CPU id, so that every
// sequence fails over to the slow paths, which know the fake ids. Read by every sequence
// (a plain load: it changes only around tests' ScopedFakeCpu); written under a mutex in cpu.cc.
extern std::atomic<uint32_t> g_rseq_cpu_limit;

// AllowRseqCpus()
//
// Opens the CPU ids to the sequences (g_rseq_cpu_limit = NumCpus() unless a fake CPU id is in
// use). REQUIRES: RseqUsable() decided for them.
void AllowRseqCpus();

// The CPU id from sched_getcpu(), for threads without a registered rseq area.
int SchedCurrentCpu();

#if SYNCPOOL_HAVE_GLIBC_RSEQ
// RseqCpuId()
//
// The `cpu_id` field of the calling thread's rseq area: the CPU id, or negative when the
// kernel did not register the area for this thread. REQUIRES: __rseq_size != 0.
inline int RseqCpuId() {
  // %fs:0 holds the thread pointer on x86-64; glibc's area sits at __rseq_offset from it.
  // The kernel rewrites cpu_id whenever the thread is scheduled, hence the volatile load.
  char* tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  const auto* area = reinterpret_cast<const struct rseq*>(tp + __rseq_offset);
  return static_cast<int>(*reinterpret_cast<const volatile uint32_t*>(&area->cpu_id));
}
#endif

// RealCurrentCpu()
//
// The real CPU id: glibc's rseq `cpu_id` when registered, sched_getcpu() otherwise.
inline int RealCurrentCpu() {
#if SYNCPOOL_HAVE_GLIBC_RSEQ
  if (ABSL_PREDICT_TRUE(__rseq_size != 0)) {
    const int cpu = RseqCpuId();
    if (ABSL_PREDICT_TRUE(cpu >= 0)) return cpu;
  }
#endif
  return SchedCurrentCpu();
}

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

// True when glibc registered an rseq area for this process's threads.
bool RseqAvailable();

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_CPU_H_
