// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A test seam, not installed: `syncpool::testing::ScopedFakeCpu` makes every pool and resource
// believe the calling thread runs on a chosen CPU, so tests place work on CPU caches
// deterministically.
//
//   {
//     syncpool::testing::ScopedFakeCpu on_cpu(1);
//     pool.Put(...);      // goes to CPU 1's cache
//   }
//
// While any thread uses a fake CPU, the restartable sequences are closed for every thread
// (g_rseq_cpu_limit is 0: cpu.h), so that every operation reaches the slow paths, which ask
// CurrentCpu() or RemoteCpuOfThisThread() (src/current_cpu.h) and so see the fake id.
//
// Thread safety: affects only the calling thread; scopes nest. Costs other threads one relaxed
// load per slow path while any fake CPU is in use, and nothing measurable otherwise.

#ifndef SYNCPOOL_SRC_FAKE_CPU_H_
#define SYNCPOOL_SRC_FAKE_CPU_H_

#include <atomic>

namespace syncpool {
namespace internal {

// Nonzero while some thread uses a fake CPU id. Read with a relaxed load by CurrentCpu() and
// RemoteCpuOfThisThread(); it stays zero outside tests.
extern std::atomic<int> g_fake_cpu_users;

// The fake CPU id of this thread, or -1.
int FakeCpuOfThisThread();

}  // namespace internal

namespace testing {

class ScopedFakeCpu {
 public:
  // REQUIRES: 0 <= cpu < NumCpus(); throws std::out_of_range otherwise.
  explicit ScopedFakeCpu(int cpu);
  ScopedFakeCpu(const ScopedFakeCpu&) = delete;
  ScopedFakeCpu& operator=(const ScopedFakeCpu&) = delete;
  ~ScopedFakeCpu();

  // ScopedFakeCpu::NumCpus()
  //
  // How many CPU ids the caches have (fake ids must be below it).
  static int NumCpus();

 private:
  int previous_;
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_FAKE_CPU_H_
