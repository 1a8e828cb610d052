// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/util/latency_report.h
// -----------------------------------------------------------------------------
//
// Latency histograms (histogram.h, in timer ticks) printed for people: durations in readable
// units, a line of percentiles, a line on the tail.

#ifndef SYNCPOOL_BENCH_UTIL_LATENCY_REPORT_H_
#define SYNCPOOL_BENCH_UTIL_LATENCY_REPORT_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "bench/util/histogram.h"

namespace syncpool {
namespace bench {

// Ns()
//
// `ticks` in nanoseconds, rounded.
inline long Ns(uint64_t ticks, double ns_per_tick) {
  return static_cast<long>(static_cast<double>(ticks) * ns_per_tick + 0.5);
}

// Human()
//
// A duration for people: "850 ns", "12.5 us", "3.1 ms".
inline std::string Human(double ns) {
  char text[32];
  if (ns < 10'000) {
    std::snprintf(text, sizeof(text), "%.0f ns", ns);
  } else if (ns < 10'000'000) {
    std::snprintf(text, sizeof(text), "%.1f us", ns / 1e3);
  } else {
    std::snprintf(text, sizeof(text), "%.1f ms", ns / 1e6);
  }
  return text;
}

// PrintPercentiles()
//
// One line: `label`, the number of samples, p50, p99, p99.9, p99.99 and the largest.
inline void PrintPercentiles(const char* label, const Histogram& h, double ns_per_tick) {
  const uint64_t n = h.Total();
  if (n == 0) {
    std::printf("  %-16s no samples\n", label);
    return;
  }
  auto p = [&](double q) { return Human(static_cast<double>(h.Percentile(q)) * ns_per_tick); };
  std::printf("  %-16s %11llu samples  p50 %-8s p99 %-8s p99.9 %-8s p99.99 %-8s max %s\n", label,
              static_cast<unsigned long long>(n), p(0.5).c_str(), p(0.99).c_str(), p(0.999).c_str(),
              p(0.9999).c_str(), Human(static_cast<double>(h.max()) * ns_per_tick).c_str());
}

// PrintTail()
//
// Where the samples beyond 2 us lie (beyond 2 us, 10 us, 100 us, 1 ms), and how much time they
// took; one line, `label` first.
inline void PrintTail(const char* label, const Histogram& h, double ns_per_tick) {
  const uint64_t total = h.Total();
  if (total == 0) return;
  std::printf("  %stail:", label);
  const double bounds_ns[] = {2e3, 10e3, 100e3, 1e6};
  const char* names[] = {"> 2 us", "> 10 us", "> 100 us", "> 1 ms"};
  for (size_t i = 0; i < 4; ++i) {
    uint64_t n = 0;
    const double sum = h.SumAbove(static_cast<uint64_t>(bounds_ns[i] / ns_per_tick), &n);
    std::printf("%s %s: %llu (%.2g%%, %s in all)", i == 0 ? "" : ";", names[i],
                static_cast<unsigned long long>(n),
                100.0 * static_cast<double>(n) / static_cast<double>(total),
                Human(sum * ns_per_tick).c_str());
  }
  std::printf("\n");
}

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_UTIL_LATENCY_REPORT_H_
