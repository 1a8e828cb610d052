// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/util/rss_sampler.h
// -----------------------------------------------------------------------------
//
// The resident set of this process as the operating system sees it: read from
// /proc/self/statm, once (RssReader) or periodically on a thread of its own (RssSampler), with
// no allocation while sampling, so that the measurement does not move what it measures.

#ifndef SYNCPOOL_BENCH_UTIL_RSS_SAMPLER_H_
#define SYNCPOOL_BENCH_UTIL_RSS_SAMPLER_H_

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <thread>
#include <vector>

namespace syncpool {
namespace bench {

// Reads the resident set size from /proc/self/statm (its second field, in pages). The file
// stays open, and a read allocates nothing.
class RssReader {
 public:
  RssReader()
      : fd_(open("/proc/self/statm", O_RDONLY | O_CLOEXEC)),
        page_bytes_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {}
  RssReader(const RssReader&) = delete;
  RssReader& operator=(const RssReader&) = delete;
  ~RssReader() {
    if (fd_ >= 0) close(fd_);
  }

  bool ok() const { return fd_ >= 0; }

  // Resident bytes now; 0 when the file cannot be read.
  size_t Read() const {
    char text[160];
    const ssize_t n = pread(fd_, text, sizeof(text) - 1, 0);
    if (n <= 0) return 0;
    text[n] = '\0';
    unsigned long size = 0, resident = 0;
    if (std::sscanf(text, "%lu %lu", &size, &resident) != 2) return 0;
    return static_cast<size_t>(resident) * page_bytes_;
  }

 private:
  const int fd_;
  const size_t page_bytes_;
};

// One reading: when, and the resident bytes.
struct RssSample {
  std::chrono::steady_clock::time_point when;
  size_t rss;
};

// Samples the resident set every `period` on its own thread, from Start() to Stop(), into
// storage reserved up front (so that sampling itself does not allocate).
class RssSampler {
 public:
  using Clock = std::chrono::steady_clock;

  RssSampler(const RssReader* reader, Clock::duration period) : reader_(reader), period_(period) {
    samples_.reserve(kCapacity);
  }
  RssSampler(const RssSampler&) = delete;
  RssSampler& operator=(const RssSampler&) = delete;

  void Start() {
    thread_ = std::thread([this] {
      Clock::time_point next = Clock::now();
      while (!stop_.load(std::memory_order_acquire)) {
        if (samples_.size() < kCapacity) samples_.push_back({Clock::now(), reader_->Read()});
        next += period_;
        std::this_thread::sleep_until(next);
      }
      if (samples_.size() < kCapacity) samples_.push_back({Clock::now(), reader_->Read()});
    });
  }

  // Stops the thread after one last sample; the samples can be read afterwards.
  const std::vector<RssSample>& Stop() {
    stop_.store(true, std::memory_order_release);
    thread_.join();
    return samples_;
  }

 private:
  static constexpr size_t kCapacity = size_t{1} << 17;  // About 20 minutes at 10 ms.

  const RssReader* const reader_;
  const Clock::duration period_;
  std::vector<RssSample> samples_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_UTIL_RSS_SAMPLER_H_
