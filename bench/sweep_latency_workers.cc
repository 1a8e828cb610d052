// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The threads of bench/sweep_latency.cc: workers, the Driver, and the merge of their records.
// The protocol between them is in sweep_latency_workers.h.

#include "bench/sweep_latency_workers.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "bench/util/histogram.h"
#include "bench/util/tsc_timer.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"
#include "tests/cpu_affinity.h"

namespace syncpool {
namespace bench {
namespace sweep_latency {
namespace {

using ::syncpool::testing::PinTo;
using ::syncpool::testing::SetAffinity;

long InvoluntarySwitches() {
  rusage usage;
  if (getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  return usage.ru_nivcsw;
}

}  // namespace

void Fill(std::pmr::memory_resource* mr, const Config& config, int half, std::vector<void*>& hold) {
  for (size_t k = 0; k < config.sizes.size(); ++k) {
    if (half >= 0 && static_cast<int>(k % 2) != half) continue;
    const size_t size = config.sizes[k];
    for (uint32_t i = 0; i < config.per_cpu; ++i) hold[i] = mr->allocate(size);
    for (uint32_t i = 0; i < config.per_cpu; ++i) mr->deallocate(hold[i], size);
  }
}

void WorkerLoop(std::pmr::memory_resource* mr, const Config& config, Control* control,
                Worker* self) {
  if (self->cpu >= 0 && !PinTo(self->cpu)) self->cpu = -1;
  const size_t num_sizes = config.sizes.size();
  const size_t* const sizes = config.sizes.data();
  uint64_t seen = control->word.load(std::memory_order_acquire);
  int phase = static_cast<int>(seen & 3);
  PhaseRecord* record = &self->phases[phase];
  uint64_t phase_start = StartTicks();
  long switches_start = InvoluntarySwitches();
  control->ready.fetch_add(1, std::memory_order_release);
  size_t k = 0;
  for (;;) {
    const uint64_t word = control->word.load(std::memory_order_relaxed);
    if (ABSL_PREDICT_FALSE(word != seen)) {
      std::atomic_thread_fence(std::memory_order_acquire);
      const uint64_t now = StartTicks();
      if ((word >> 2) != (seen >> 2)) {  // A fill request.
        if (self->fills) {
          Fill(mr, config, control->fill_half.load(std::memory_order_relaxed), self->hold);
          ++record->fills;
          record->fill_ticks += StartTicks() - now;
        }
        control->fill_acks.fetch_add(1, std::memory_order_release);
      }
      if ((word & 3) != (seen & 3)) {  // A new phase: close the old one's books.
        const uint64_t end = StartTicks();
        const long switches = InvoluntarySwitches();
        record->ticks += end - phase_start;
        record->involuntary_switches += switches - switches_start;
        if ((word & 3) == kExit) return;
        phase = static_cast<int>(word & 3);
        record = &self->phases[phase];
        phase_start = end;
        switches_start = switches;
        control->phase_acks.fetch_add(1, std::memory_order_release);
      }
      seen = word;
    }
    const size_t size = sizes[k];
    if (++k == num_sizes) k = 0;
    const uint64_t before = control->activity.load(std::memory_order_relaxed);
    const uint64_t t0 = StartTicks();
    void* p = mr->allocate(size);
    *static_cast<volatile char*>(p) = 1;
    mr->deallocate(p, size);
    const uint64_t t1 = EndTicks();
    const uint64_t after = control->activity.load(std::memory_order_relaxed);
    record->hist[OverlapOf(before, after)].Record(t1 - t0);
  }
}

Driver::Driver(PoolResource* pool, Sweeper* sweeper, const Config& config,
               std::vector<int> cpus, std::vector<std::unique_ptr<Worker>>* workers,
               int home_cpu)
    : pool_(pool),
      sweeper_(sweeper),
      config_(config),
      cpus_(std::move(cpus)),
      workers_(workers),
      home_cpu_(home_cpu),
      hold_(config.per_cpu) {
  for (int cpu : cpus_) {
    bool has_worker = false;
    for (const auto& w : *workers_) has_worker |= w->fills && w->cpu == cpu;
    if (!has_worker) self_fill_cpus_.push_back(cpu);
  }
}

void Driver::SetPhase(uint64_t phase) {
  control_.phase_acks.store(0, std::memory_order_relaxed);
  const uint64_t word = control_.word.load(std::memory_order_relaxed);
  control_.word.store((word & ~uint64_t{3}) | phase, std::memory_order_release);
  if (phase == kExit) return;
  const int n = static_cast<int>(workers_->size());
  while (control_.phase_acks.load(std::memory_order_acquire) < n) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void Driver::FillAll(int half) {
  control_.activity.fetch_add(kFillStep, std::memory_order_relaxed);
  control_.fill_half.store(half, std::memory_order_relaxed);
  control_.fill_acks.store(0, std::memory_order_relaxed);
  const uint64_t word = control_.word.load(std::memory_order_relaxed);
  control_.word.store(word + 4, std::memory_order_release);
  for (int cpu : self_fill_cpus_) {
    if (!PinTo(cpu)) continue;
    Fill(pool_, config_, half, hold_);
  }
  if (!self_fill_cpus_.empty()) Home();
  const int n = static_cast<int>(workers_->size());
  while (control_.fill_acks.load(std::memory_order_acquire) < n) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  control_.activity.fetch_add(kFillStep, std::memory_order_relaxed);
}

Clock::duration Driver::Sweep() {
  control_.activity.fetch_add(kSweepStep, std::memory_order_relaxed);
  const Clock::time_point t0 = Clock::now();
  sweeper_->SweepNow();
  const Clock::time_point t1 = Clock::now();
  control_.activity.fetch_add(kSweepStep, std::memory_order_relaxed);
  return t1 - t0;
}

void Driver::Home() {
  if (home_cpu_ >= 0) {
    PinTo(home_cpu_);
  } else {
    SetAffinity(cpus_);
  }
}

RunResult Collect(const std::vector<std::unique_ptr<Worker>>& workers, Phase phase,
                  double ns_per_tick) {
  RunResult r;
  r.workers = static_cast<int>(workers.size());
  double ticks = 0;
  uint64_t fill_ticks = 0;
  for (const auto& w : workers) {
    const PhaseRecord& p = w->phases[phase];
    uint64_t n = 0;
    for (int o = 0; o < kOverlaps; ++o) {
      r.by_overlap[o].Merge(p.hist[o]);
      r.all.Merge(p.hist[o]);
      n += p.hist[o].Total();
    }
    r.samples += n;
    ticks += static_cast<double>(p.ticks);
    r.involuntary_switches += p.involuntary_switches;
    r.fills += p.fills;
    fill_ticks += p.fill_ticks;
    // This worker's mean loop period, fills excluded, as the expected interval.
    if (n != 0) {
      const auto interval = static_cast<uint64_t>(static_cast<double>(p.ticks - p.fill_ticks) /
                                                  static_cast<double>(n));
      for (const Histogram& h : p.hist) h.AddCorrected(interval, &r.corrected);
    }
  }
  r.seconds = ticks * ns_per_tick * 1e-9 / static_cast<double>(std::max<size_t>(workers.size(), 1));
  if (r.fills != 0) r.fill_ms = static_cast<double>(fill_ticks) * ns_per_tick * 1e-6 / r.fills;
  return r;
}

}  // namespace sweep_latency
}  // namespace bench
}  // namespace syncpool
