// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/burst_workload.h
// -----------------------------------------------------------------------------
//
// The workload of bench/burst.cc, run in each child process: threads that allocate up to a
// peak through one memory resource (or a pool of strings), free everything and go idle, while
// the resident set is sampled; the child's SAMPLE and RESULT lines. burst.cc's top comment
// describes the burst and what is measured.

#ifndef SYNCPOOL_BENCH_BURST_WORKLOAD_H_
#define SYNCPOOL_BENCH_BURST_WORKLOAD_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "syncpool/pool.h"

namespace syncpool {
namespace bench {
namespace burst {

using Clock = std::chrono::steady_clock;

inline constexpr size_t kMiB = size_t{1} << 20;
inline constexpr size_t kMinBuffer = 16;
inline constexpr size_t kMaxBuffer = kMiB;
// Buffers are bytes: 8-aligned is enough. (With alignof(std::max_align_t), 16, libstdc++'s pool
// resources hand out 8-aligned blocks for sizes that are not multiples of 16, which the
// sanitizer builds report as undefined behaviour.)
inline constexpr size_t kBufferAlignment = 8;
inline constexpr auto kSamplePeriod = std::chrono::milliseconds(10);
// The resident set has settled once it stays within baseline + kSettleBand * (peak - baseline).
inline constexpr double kSettleBand = 0.05;

// Every resource, in the order they run.
inline constexpr std::string_view kResources[] = {"syncpool",   "synchronized_pool", "unsynchronized_pool",
                                           "new_delete", "mimalloc",          "string_pool",
                                           "string_new"};
// The string children's sizes.
inline constexpr size_t kMinString = 1024;
inline constexpr size_t kMaxString = 16 * kMiB;

// The command line of bench/burst (the parent's, passed on to each child).
struct Flags {
  int sweep_ms = 100;        // --sweep_ms: the syncpool child's sweep interval.
  int peak_mib = 512;        // --peak_mib: what the threads hold together at the peak.
  int threads = 4;           // --threads
  int idle_intervals = 5;    // --idle_intervals: how long to watch after going idle, in sweeps.
  int max_block_kib = 1024;  // --max_block_kib: the syncpool child's Options::max_block_size.
  int max_object_mib = 64;   // --max_object_mib: the string_pool child's max_object_bytes.
  int outlier_mib = 256;     // --outlier_mib: the string children's outlier.
  bool collect_after_sweep = false;    // --collect_after_sweep: see SyncpoolChild.
  bool workers_exit = false;           // --workers_exit: threads end instead of blocking.
  bool free_others = false;            // --free_others: thread t frees thread t+1's buffers.
  bool owners_collect = false;         // --owners_collect: see RunBurst.
  std::string csv;                     // --csv=FILE.csv: the samples, for scripts/plot_memory.sh
  std::vector<std::string> resources;  // --resources=a,b,...: a subset, in this order.
  std::string child;                   // --child=NAME: run one resource (the parent's children).
};

// A buffer a burst thread holds.
struct Buffer {
  void* p;
  size_t bytes;
};

// What the threads share: where they are in the burst, and their buffers.
struct Phases {
  explicit Phases(int threads)
      : live(threads), start(1), peak(threads), idle(threads), collected(threads) {}
  // Each thread's buffers.
  std::vector<std::vector<Buffer>> live;
  // Released by the main thread once the baseline is taken.
  std::latch start;
  // Every thread holds its share.
  std::latch peak;
  // Every buffer is freed.
  std::latch idle;
  // --owners_collect: every thread has run the owner hook.
  std::latch collected;
  // What blocked threads do next: kIdle (stay blocked), kCollect (run the owner hook once), or
  // kDone (end).
  std::atomic<int> stage{0};
  static constexpr int kIdle = 0, kCollect = 1, kDone = 2;
};

// Where the string children's threads get and drop their strings: a Pool<std::string>, or
// (pool == nullptr) new and delete.
struct StringSource {
  syncpool::Pool<std::string>* pool;
  // The largest capacity a Get handed out after the outlier went back (relaxed: read after
  // the threads are idle).
  std::atomic<size_t> largest_get{0};
  std::atomic<bool> outlier_back{false};

  std::unique_ptr<std::string> Take() {
    std::unique_ptr<std::string> s =
        pool != nullptr ? pool->Get().release() : std::make_unique<std::string>();
    if (outlier_back.load(std::memory_order_relaxed)) {
      size_t seen = largest_get.load(std::memory_order_relaxed);
      while (s->capacity() > seen && !largest_get.compare_exchange_weak(seen, s->capacity())) {
      }
    }
    return s;
  }
  void Drop(std::unique_ptr<std::string> s) {
    if (pool != nullptr) pool->Put(std::move(s));
  }
};

// A memory_resource that lets several threads share one that is not thread-safe, by holding
// one mutex around each call: how an unsynchronized_pool_resource is shared here.
class LockedResource final : public std::pmr::memory_resource {
 public:
  explicit LockedResource(std::pmr::memory_resource* inner) : inner_(inner) {}

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    std::lock_guard<std::mutex> l(mu_);
    return inner_->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    std::lock_guard<std::mutex> l(mu_);
    inner_->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::mutex mu_;
  std::pmr::memory_resource* const inner_;
};

inline double Mib(size_t bytes) { return static_cast<double>(bytes) / static_cast<double>(kMiB); }

// Thread `index` of a burst through `mr`: churns until it holds its share of --peak_mib, waits
// for the others, frees its buffers (with --free_others, those of the next thread), and then
// blocks until the run is over (with --workers_exit, ends at once). `owner_hook` runs on this
// thread when the main thread asks for it (--owners_collect).
void BurstThread(int index, std::pmr::memory_resource* mr, const Flags& flags,
                 const std::function<void()>& owner_hook, Phases* phases);

// BurstThread() for the string children: strings of kMinString to kMaxString bytes, each
// written whole; the bytes held are their capacities.
void StringBurstThread(int index, StringSource* source, const Flags& flags, Phases* phases);

// The threads of a burst through `mr`.
std::function<void(int, Phases*)> ThroughResource(const Flags& flags,
                                                   std::pmr::memory_resource* mr,
                                                   std::function<void()> owner_hook);

// Runs the burst (`thread_body` on each thread), samples the resident set, and prints the
// samples and the RESULT line; returns the child's exit status. `report` runs on the main
// thread at the end, while the threads are still blocked (syncpool prints its statistics
// there).
int RunBurst(const Flags& flags, std::string_view name,
             const std::function<void(int, Phases*)>& thread_body,
             const std::function<void()>& report);

}  // namespace burst
}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_BURST_WORKLOAD_H_
