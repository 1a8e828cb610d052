// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/util/histogram.h
// -----------------------------------------------------------------------------
//
// A latency histogram for the benchmark tools: counts of values (timer ticks) in buckets of a
// bounded relative width, preallocated so that recording a sample never allocates; percentiles,
// the time spent above a threshold, and HdrHistogram's correction for coordinated omission.
//
// Thread safety: none; one histogram per thread, merged once the threads are done.

#ifndef SYNCPOOL_BENCH_UTIL_HISTOGRAM_H_
#define SYNCPOOL_BENCH_UTIL_HISTOGRAM_H_

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace syncpool {
namespace bench {

// Counts of values (ticks): exact below 2 * kSub, then kSub buckets per power of two (a
// relative width of 1 / kSub). Preallocated; Record() never allocates.
class Histogram {
 public:
  static constexpr int kSubBits = 10;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr int kMaxBits = 44;  // Larger values (hours of ticks) are clamped.
  static constexpr size_t kBuckets = (kMaxBits - kSubBits + 1) * kSub;

  Histogram() : counts_(std::make_unique<uint64_t[]>(kBuckets)) {}  // Zeroed: pages touched.

  static size_t Index(uint64_t v) {
    v = std::min(v, (uint64_t{1} << kMaxBits) - 1);
    if (v < 2 * kSub) return static_cast<size_t>(v);
    const int shift = std::bit_width(v) - 1 - kSubBits;
    return static_cast<size_t>(shift + 1) * kSub + static_cast<size_t>((v >> shift) - kSub);
  }
  // The smallest value of bucket `i`, and its width.
  static uint64_t Lower(size_t i) {
    if (i < 2 * kSub) return i;
    const int shift = static_cast<int>(i / kSub) - 1;
    return (i % kSub + kSub) << shift;
  }
  static uint64_t Width(size_t i) {
    return i < 2 * kSub ? 1 : uint64_t{1} << (static_cast<int>(i / kSub) - 1);
  }
  // The largest value of bucket `i`.
  static uint64_t Upper(size_t i) { return Lower(i) + Width(i) - 1; }

  void Record(uint64_t v) {
    ++counts_[Index(v)];
    max_ = std::max(max_, v);
  }
  void Add(size_t bucket, uint64_t n) { counts_[bucket] += n; }
  void Merge(const Histogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    max_ = std::max(max_, other.max_);
  }
  void Clear() {
    std::fill(counts_.get(), counts_.get() + kBuckets, uint64_t{0});
    max_ = 0;
  }

  uint64_t count(size_t i) const { return counts_[i]; }
  uint64_t max() const { return max_; }
  uint64_t Total() const {
    uint64_t n = 0;
    for (size_t i = 0; i < kBuckets; ++i) n += counts_[i];
    return n;
  }
  // Sum of the values (bucket midpoints), for the time spent in a range.
  double SumAbove(uint64_t threshold, uint64_t* n_above) const {
    double sum = 0;
    uint64_t n = 0;
    for (size_t i = Index(threshold) + 1; i < kBuckets; ++i) {
      if (counts_[i] == 0) continue;
      n += counts_[i];
      sum += static_cast<double>(counts_[i]) *
             (static_cast<double>(Lower(i)) + static_cast<double>(Width(i) - 1) / 2);
    }
    *n_above = n;
    return sum;
  }

  // The smallest value that at least a fraction `q` of the samples do not exceed (the upper
  // end of its bucket, capped by the largest sample); 0 when empty.
  uint64_t Percentile(double q) const {
    const uint64_t total = Total();
    if (total == 0) return 0;
    const auto rank = static_cast<uint64_t>(q * static_cast<double>(total) + 0.5);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= std::max<uint64_t>(rank, 1)) return std::min(Upper(i), max_);
    }
    return max_;
  }

  // Adds to `out` this histogram corrected for coordinated omission with the expected interval
  // `interval` between samples, as HdrHistogram's recordValueWithExpectedInterval(): a sample
  // of value v > interval also stands for samples of v - interval, v - 2 * interval, ... down
  // to interval, those that would have queued behind it.
  void AddCorrected(uint64_t interval, Histogram* out) const {
    interval = std::max<uint64_t>(interval, 1);
    out->max_ = std::max(out->max_, max_);
    for (size_t b = 0; b < kBuckets; ++b) {
      const uint64_t n = counts_[b];
      if (n == 0) continue;
      out->counts_[b] += n;
      const uint64_t v = Lower(b) + (Width(b) - 1) / 2;
      if (v < 2 * interval) continue;
      const uint64_t k_max = v / interval - 1;  // v - k_max * interval >= interval.
      for (uint64_t k = 1; k <= k_max;) {
        const size_t target = Index(v - k * interval);
        // Every k' from k on whose value stays in the same bucket.
        const uint64_t k_end = std::min(k_max, (v - Lower(target)) / interval);
        out->counts_[target] += n * (k_end - k + 1);
        k = k_end + 1;
      }
    }
  }

 private:
  std::unique_ptr<uint64_t[]> counts_;
  uint64_t max_ = 0;
};

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_UTIL_HISTOGRAM_H_
