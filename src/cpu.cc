// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// CPU identity and the fake-CPU seam for tests.

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "syncpool/internal/cpu.h"
#include "syncpool/testing/fake_cpu.h"

namespace syncpool {
namespace internal {
namespace {

int ComputeNumCpus() {
  const long configured = sysconf(_SC_NPROCESSORS_CONF);
  return configured > 0 ? static_cast<int>(configured) : 1;
}

thread_local int tls_fake_cpu = -1;

}  // namespace

std::atomic<int> g_fake_cpu_users{0};

int NumCpus() {
  static const int num_cpus = ComputeNumCpus();
  return num_cpus;
}

int FakeCpuOfThisThread() { return tls_fake_cpu; }

int SchedCurrentCpu() {
  const int cpu = sched_getcpu();
  // sched_getcpu() can fail (ENOSYS on exotic kernels): every thread then shares cache 0.
  if (cpu < 0) return 0;
  return cpu < NumCpus() ? cpu : cpu % NumCpus();
}

bool RseqAvailable() {
#if SYNCPOOL_HAVE_GLIBC_RSEQ
  return __rseq_size != 0;
#else
  return false;
#endif
}

}  // namespace internal

namespace testing {

ScopedFakeCpu::ScopedFakeCpu(int cpu) {
  if (cpu < 0 || cpu >= internal::NumCpus()) {
    throw std::out_of_range("syncpool::testing::ScopedFakeCpu: cpu " + std::to_string(cpu) +
                            " is outside [0, " + std::to_string(internal::NumCpus()) + ")");
  }
  previous_ = internal::tls_fake_cpu;
  internal::tls_fake_cpu = cpu;
  internal::g_fake_cpu_users.fetch_add(1, std::memory_order_relaxed);
}

ScopedFakeCpu::~ScopedFakeCpu() {
  internal::tls_fake_cpu = previous_;
  internal::g_fake_cpu_users.fetch_sub(1, std::memory_order_relaxed);
}

int ScopedFakeCpu::NumCpus() { return internal::NumCpus(); }

}  // namespace testing
}  // namespace syncpool
