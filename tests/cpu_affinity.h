// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The calling thread's CPU affinity, for tests and benchmarks that pin threads to real CPUs:
// the CPUs it may run on, restricting it to some of them, and restoring what it had.
//
// Thread safety: every function acts on the calling thread only.

#ifndef SYNCPOOL_TESTS_CPU_AFFINITY_H_
#define SYNCPOOL_TESTS_CPU_AFFINITY_H_

#include <sched.h>

#include <vector>

namespace syncpool {
namespace testing {

// AllowedCpus()
//
// The CPUs the calling thread may run on, in increasing order; empty when the kernel does
// not say.
inline std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// SetAffinity()
//
// Restricts the calling thread to `cpus`; returns whether the kernel accepted it.
inline bool SetAffinity(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// PinTo()
//
// Pins the calling thread to `cpu`; returns whether it now runs there (the kernel moves a
// thread whose affinity excludes its CPU before the call returns).
inline bool PinTo(int cpu) { return SetAffinity({cpu}) && sched_getcpu() == cpu; }

// Restores the calling thread's affinity, as it was when the scope began, when the scope ends.
class ScopedAffinity {
 public:
  ScopedAffinity() { saved_ok_ = sched_getaffinity(0, sizeof(saved_), &saved_) == 0; }
  ScopedAffinity(const ScopedAffinity&) = delete;
  ScopedAffinity& operator=(const ScopedAffinity&) = delete;
  ~ScopedAffinity() {
    if (saved_ok_) sched_setaffinity(0, sizeof(saved_), &saved_);
  }

 private:
  cpu_set_t saved_;
  bool saved_ok_ = false;
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_CPU_AFFINITY_H_
