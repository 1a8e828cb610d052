// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/sweep_latency_workers.h
// -----------------------------------------------------------------------------
//
// The threads of bench/sweep_latency.cc: the workers that time allocate + deallocate pairs,
// the main thread's Driver that orders phases, fills and sweeps, and the merge of what the
// workers measured. sweep_latency.cc's top comment describes the run.
//
// Protocol: the Driver (main thread) is the only writer of Control::word, fill_half and
// activity; each worker only adds to the counters ready, fill_acks and phase_acks and writes
// its own Worker record. A worker's records are read by the main thread only after the worker
// acknowledged the phase change that closed them (phase_acks, release/acquire), or after it
// has been joined.

#ifndef SYNCPOOL_BENCH_SWEEP_LATENCY_WORKERS_H_
#define SYNCPOOL_BENCH_SWEEP_LATENCY_WORKERS_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <thread>
#include <vector>

#include "bench/util/histogram.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace bench {
namespace sweep_latency {

using Clock = std::chrono::steady_clock;

enum Phase : int { kIdle = 0, kBaseline = 1, kSweeps = 2, kPhases = 3 };

// When a sample ran: overlapping a sweep (SweepNow() on the main thread), overlapping a fill (on
// any thread), or neither.
enum Overlap : int { kQuiet = 0, kInSweep = 1, kInFill = 2, kOverlaps = 3 };

// What one worker measured in one phase: its samples by overlap, the ticks it spent in the
// phase, its involuntary context switches, its fills.
struct PhaseRecord {
  Histogram hist[kOverlaps];
  uint64_t ticks = 0;
  long involuntary_switches = 0;
  int fills = 0;
  uint64_t fill_ticks = 0;
};

struct Worker {
  int cpu = -1;             // Pinned there (-1: not pinned).
  bool fills = false;       // The first worker of its CPU: fills that CPU's cache.
  std::vector<void*> hold;  // Room for one fill of one size.
  PhaseRecord phases[kPhases];
  std::thread thread;
};

// The main thread's orders. `word` changes whenever anything changes: workers test it once per
// sample (one relaxed load of a line written a few times per sweep).
struct Control {
  // Bits 0-1: the phase (kIdle, kBaseline, kSweeps) or 3 to exit; above: the fill generation.
  std::atomic<uint64_t> word{0};
  std::atomic<int> fill_half{-1};  // The half to fill (-1: every size); set before `word`.
  std::atomic<int> fill_acks{0};
  std::atomic<int> phase_acks{0};  // Workers that closed the previous phase's books.
  std::atomic<int> ready{0};
  // Two counters in one word, each odd while its activity runs: bits 0-31 count the starts and
  // ends of sweeps, bits 32-63 those of fills. A sample that sees a counter odd, or changed by
  // its end, overlapped that activity.
  std::atomic<uint64_t> activity{0};
};

constexpr uint64_t kSweepStep = 1;
constexpr uint64_t kFillStep = uint64_t{1} << 32;

// Which activity a sample overlapped, from the activity word before and after it.
inline int OverlapOf(uint64_t before, uint64_t after) {
  if ((before & 1) != 0 || static_cast<uint32_t>(before) != static_cast<uint32_t>(after)) {
    return kInSweep;
  }
  if (((before >> 32) & 1) != 0 || (before >> 32) != (after >> 32)) return kInFill;
  return kQuiet;
}

constexpr uint64_t kExit = 3;

struct Config {
  std::vector<size_t> sizes;
  uint32_t per_cpu = 0;  // Blocks per CPU, size and generation.
};

// Allocates a generation's capacity of every size of half `half` (0: even positions, 1: odd
// ones, -1: all) and frees it again, on the calling thread's CPU.
void Fill(std::pmr::memory_resource* mr, const Config& config, int half, std::vector<void*>& hold);

// A worker: pinned to its CPU, times allocate + deallocate pairs into the histograms of the
// current phase (the idle phase's are discarded), fills its CPU's cache when asked. Returns
// when the phase becomes kExit.
void WorkerLoop(std::pmr::memory_resource* mr, const Config& config, Control* control,
                Worker* self);

// The main thread's side: phases, fills on every CPU (by the workers, or by the main thread on
// a CPU without one), sweeps marked in Control::activity.
class Driver {
 public:
  // `home_cpu`: where the main thread runs between fills (-1: anywhere among `cpus`).
  Driver(PoolResource* pool, Sweeper* sweeper, const Config& config, std::vector<int> cpus,
         std::vector<std::unique_ptr<Worker>>* workers, int home_cpu);

  Control& control() { return control_; }

  // Starts `phase` and, unless it is kExit, waits until every worker has closed the books of
  // the previous one.
  void SetPhase(uint64_t phase);

  // Refills `half` (-1: every size) on every CPU and waits until it is done.
  void FillAll(int half);

  // One sweep, marked for the workers. Returns its duration.
  Clock::duration Sweep();

  // Moves the main thread back to its CPU (or its CPUs).
  void Home();

 private:
  PoolResource* const pool_;
  Sweeper* const sweeper_;
  const Config& config_;
  const std::vector<int> cpus_;
  std::vector<std::unique_ptr<Worker>>* const workers_;
  const int home_cpu_;
  std::vector<int> self_fill_cpus_;  // CPUs without a worker: the main thread fills them.
  std::vector<void*> hold_;
  Control control_;
};

// What a run measured, all workers together.
struct RunResult {
  Histogram all, corrected;
  Histogram by_overlap[kOverlaps];
  uint64_t samples = 0;
  int workers = 0;
  double seconds = 0;  // Mean over workers of the time in the phase.
  long involuntary_switches = 0;
  int fills = 0;
  double fill_ms = 0;  // Mean time of one fill (one worker, one CPU).
};


// Merges what the workers measured in `phase`. REQUIRES: every worker has closed that phase
// (Driver::SetPhase() returned after it).
RunResult Collect(const std::vector<std::unique_ptr<Worker>>& workers, Phase phase,
                  double ns_per_tick);

}  // namespace sweep_latency
}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_SWEEP_LATENCY_WORKERS_H_
