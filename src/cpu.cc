// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// CPU identity and the fake-CPU seam for tests.

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
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

// Serializes the updates of g_fake_cpu_users and g_rseq_cpu_limit, so that the limit always
// matches both (a ScopedFakeCpu ending on one thread while another begins).
std::mutex& LimitMutex() {
  static std::mutex* const mu = new std::mutex;
  return *mu;
}
bool g_rseq_cpus_allowed = false;  // Guarded by LimitMutex().

// REQUIRES: LimitMutex() held.
void UpdateRseqCpuLimit() {
  const bool open = g_rseq_cpus_allowed && g_fake_cpu_users.load(std::memory_order_relaxed) == 0;
  g_rseq_cpu_limit.store(open ? static_cast<uint32_t>(NumCpus()) : 0, std::memory_order_relaxed);
}

}  // namespace

std::atomic<int> g_fake_cpu_users{0};
std::atomic<uint32_t> g_rseq_cpu_limit{0};

void AllowRseqCpus() {
  std::lock_guard<std::mutex> l(LimitMutex());
  g_rseq_cpus_allowed = true;
  UpdateRseqCpuLimit();
}

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
  std::lock_guard<std::mutex> l(internal::LimitMutex());
  internal::g_fake_cpu_users.fetch_add(1, std::memory_order_relaxed);
  internal::UpdateRseqCpuLimit();
}

ScopedFakeCpu::~ScopedFakeCpu() {
  internal::tls_fake_cpu = previous_;
  std::lock_guard<std::mutex> l(internal::LimitMutex());
  internal::g_fake_cpu_users.fetch_sub(1, std::memory_order_relaxed);
  internal::UpdateRseqCpuLimit();
}

int ScopedFakeCpu::NumCpus() { return internal::NumCpus(); }

}  // namespace testing
}  // namespace syncpool
