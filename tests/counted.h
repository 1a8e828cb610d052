// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Objects that count their constructions and destructions, for tests that check a pool made
// exactly the objects its statistics say (misses), and destroyed the others (spills, sweeps).
//
// Thread safety: the counts are relaxed atomics; read them after the threads that make and
// destroy objects are joined (or stopped), which orders every update before the read.

#ifndef SYNCPOOL_TESTS_COUNTED_H_
#define SYNCPOOL_TESTS_COUNTED_H_

#include <atomic>
#include <cstdint>

namespace syncpool {
namespace testing {

// A base that counts the objects of `Derived`: `struct Obj : Counted<Obj> { ... };`. Each
// derived type has counts of its own.
template <typename Derived>
class Counted {
 public:
  Counted() { constructed_.fetch_add(1, std::memory_order_relaxed); }
  Counted(const Counted&) : Counted() {}
  Counted& operator=(const Counted&) = default;
  ~Counted() { destroyed_.fetch_add(1, std::memory_order_relaxed); }

  // Counted::ResetCounts()
  //
  // Starts both counts from 0 again. REQUIRES: no object of `Derived` is alive.
  static void ResetCounts() {
    constructed_.store(0, std::memory_order_relaxed);
    destroyed_.store(0, std::memory_order_relaxed);
  }

  // Counted::constructed(), Counted::destroyed(), Counted::alive()
  static uint64_t constructed() { return constructed_.load(std::memory_order_relaxed); }
  static uint64_t destroyed() { return destroyed_.load(std::memory_order_relaxed); }
  static uint64_t alive() { return constructed() - destroyed(); }

 private:
  static inline std::atomic<uint64_t> constructed_{0};
  static inline std::atomic<uint64_t> destroyed_{0};
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_COUNTED_H_
