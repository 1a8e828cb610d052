// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/testing/fake_cpu.h
// -----------------------------------------------------------------------------
//
// A test seam: `syncpool::testing::ScopedFakeCpu` makes every pool and resource believe the
// calling thread runs on a chosen CPU, so tests place work on CPU caches deterministically.
//
//   {
//     syncpool::testing::ScopedFakeCpu on_cpu(1);
//     pool.Put(...);      // goes to CPU 1's cache
//   }
//
// Thread safety: affects only the calling thread; scopes nest. Costs other threads one relaxed
// load per operation while any fake CPU is in use, and nothing measurable otherwise.

#ifndef SYNCPOOL_TESTING_FAKE_CPU_H_
#define SYNCPOOL_TESTING_FAKE_CPU_H_

namespace syncpool {
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

#endif  // SYNCPOOL_TESTING_FAKE_CPU_H_
