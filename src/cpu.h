// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/cpu.h
// -----------------------------------------------------------------------------
//
// CPU identity: which CPU the calling thread runs on, and how many CPU ids can occur. This is
// the bottom layer of the per-CPU caches. Not part of syncpool's API.
//
// RealCurrentCpu() reads `cpu_id` from the restartable-sequences area glibc (2.35 and later)
// registers for every thread: one load from the thread pointer. Where glibc registered no area
// (RseqRegistered() is false: glibc 2.34, GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, qemu)
// it falls back to sched_getcpu(). syncpool never registers an area of its own.
//
// One build runs on every glibc from 2.34 up: glibc's `__rseq_offset` and `__rseq_size`
// (GLIBC_2.35) are named only in src/cpu.cc, which looks them up at run time (null where glibc
// has none) instead of linking them, and everything inline uses the library's own copies
// (g_rseq_area_offset, RseqRegistered()), set by InitRseqArea().
//
// The answer is a hint: the thread may migrate right after reading it. Every user of the value
// must stay correct when it is stale (the locked per-CPU caches are: they lock the cache they
// picked, whichever CPU that belongs to).

#ifndef SYNCPOOL_SRC_CPU_H_
#define SYNCPOOL_SRC_CPU_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/optimization.h"
#include "syncpool/internal/percpu_abi.h"


namespace syncpool {
namespace internal {

// NumCpus()
//
// The number of CPU ids that can occur (the configured CPUs, not the online ones), at least 1.
// Every id that RealCurrentCpu() returns is below it.
int NumCpus();


// AllowRseqCpus()
//
// Opens the CPU ids to the sequences (g_rseq_cpu_limit = NumCpus() unless cpu.cc holds them
// closed). REQUIRES: RseqUsable() decided for them.
void AllowRseqCpus();

// The CPU id from sched_getcpu(), for threads without a registered rseq area.
int SchedCurrentCpu();

// InitRseqArea()
//
// Sets g_rseq_area_offset and RseqRegistered() once per process; later calls return at once.
// Thread-safe. It runs from an ELF constructor in src/cpu.cc, before main() and before any
// constructor of an object that links syncpool; RseqUsable() and every BlockCache constructor
// call it too, so that no restartable sequence can run before it (see g_rseq_area_offset).
void InitRseqArea();

// True when glibc registered an rseq area for this process's threads (`__rseq_size != 0`; 0 or
// absent under glibc 2.34, GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, qemu). False until
// InitRseqArea() ran. Read with an acquire load, which orders the read of g_rseq_area_offset
// after it.
extern std::atomic<bool> g_rseq_registered;
inline bool RseqRegistered() { return g_rseq_registered.load(std::memory_order_acquire); }

// True when glibc registered an rseq area: InitRseqArea(), then RseqRegistered(). For callers
// that may run before the ELF constructor.
bool RseqAvailable();

#if SYNCPOOL_HAVE_GLIBC_RSEQ

// UnregisteredRseqAreaOffset()
//
// The offset from the thread pointer of syncpool's own area (see g_rseq_area_offset), computed
// for the calling thread: the same in every thread (initial-exec TLS).
ptrdiff_t UnregisteredRseqAreaOffset();

// RseqCpuId()
//
// The `cpu_id` field of the calling thread's rseq area: the CPU id, or negative when the
// kernel did not register the area for this thread. REQUIRES: InitRseqArea() ran.
inline int RseqCpuId() {
  // %fs:0 holds the thread pointer on x86-64; the area sits at g_rseq_area_offset from it.
  // The kernel rewrites cpu_id whenever the thread is scheduled, hence the volatile load.
  char* tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  return static_cast<int>(*reinterpret_cast<const volatile uint32_t*>(
      tp + g_rseq_area_offset + kRseqCpuIdOffset));
}

// RseqColumnId()
//
// The column the calling thread's sequences use (its `cpu_id` or its `mm_cid`: see
// g_rseq_id_offset), or 0xFFFFFFFF when the kernel did not register its area (cpu_id
// negative), which the sequences refuse whatever the other field holds (glibc leaves mm_cid
// of an area it could not register at whatever the memory held). REQUIRES: InitRseqArea() ran.
inline uint32_t RseqColumnId() {
  char* tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  if (RseqCpuId() < 0) return 0xFFFFFFFFu;
  return *reinterpret_cast<const volatile uint32_t*>(tp + g_rseq_id_offset);
}
#endif

// KernelPublishesMmCid()
//
// Whether glibc registered its rseq area and the kernel writes `mm_cid` into it
// (AT_RSEQ_FEATURE_SIZE >= 28). REQUIRES: InitRseqArea() ran.
bool KernelPublishesMmCid();

// IndexRseqByConcurrencyId(), RseqIndexedByConcurrencyId()
//
// Makes the sequences index columns by `mm_cid` instead of `cpu_id`, and says whether they do.
// REQUIRES: KernelPublishesMmCid(), and no sequence can pass its bound yet (RseqUsable()
// calls it while deciding, before AllowRseqCpus()).
void IndexRseqByConcurrencyId();
bool RseqIndexedByConcurrencyId();

// RealCurrentCpu()
//
// The real CPU id: the rseq area's `cpu_id` when glibc registered it, sched_getcpu() otherwise.
inline int RealCurrentCpu() {
#if SYNCPOOL_HAVE_GLIBC_RSEQ
  if (ABSL_PREDICT_TRUE(RseqRegistered())) {
    const int cpu = RseqCpuId();
    if (ABSL_PREDICT_TRUE(cpu >= 0)) return cpu;
  }
#endif
  return SchedCurrentCpu();
}

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_CPU_H_
