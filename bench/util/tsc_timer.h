// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/util/tsc_timer.h
// -----------------------------------------------------------------------------
//
// A timer for single operations of a few nanoseconds: ticks of the time stamp counter on x86
// (nanoseconds of steady_clock elsewhere), read between fences so that the timed operations
// stay between the two reads, and their length in nanoseconds measured once against
// steady_clock. Reading it allocates nothing.

#ifndef SYNCPOOL_BENCH_UTIL_TSC_TIMER_H_
#define SYNCPOOL_BENCH_UTIL_TSC_TIMER_H_

#include <chrono>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define SYNCPOOL_BENCH_HAVE_TSC 1
#else
#define SYNCPOOL_BENCH_HAVE_TSC 0
#endif

namespace syncpool {
namespace bench {

// What the ticks are: "rdtsc" or "steady_clock".
inline const char* TickSource() { return SYNCPOOL_BENCH_HAVE_TSC ? "rdtsc" : "steady_clock"; }

// StartTicks(), EndTicks()
//
// The ticks before and after a timed region: t0 = StartTicks(); ...; t1 = EndTicks().
inline uint64_t StartTicks() {
#if SYNCPOOL_BENCH_HAVE_TSC
  _mm_lfence();
  const uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
#else
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
#endif
}

inline uint64_t EndTicks() {
#if SYNCPOOL_BENCH_HAVE_TSC
  unsigned aux;
  const uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
#else
  return StartTicks();
#endif
}

// CalibrateTicks()
//
// Nanoseconds per tick, measured against steady_clock over `span` (1 without a time stamp
// counter).
inline double CalibrateTicks(std::chrono::milliseconds span) {
#if SYNCPOOL_BENCH_HAVE_TSC
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  const uint64_t c0 = StartTicks();
  std::this_thread::sleep_for(span);
  const Clock::time_point t1 = Clock::now();
  const uint64_t c1 = StartTicks();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(c1 - c0);
#else
  static_cast<void>(span);
  return 1.0;
#endif
}

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_UTIL_TSC_TIMER_H_
