// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/sweep_latency.cc
// -----------------------------------------------------------------------------
//
// Sweeps never stop the world: this tool measures the latency of single allocate + deallocate
// pairs on worker threads while sweeps run over about a million cached blocks, and without
// sweeps for comparison:
//
//   bazel run -c opt //bench:sweep_latency
//   bazel run -c opt //bench:sweep_latency -- --threads=1 --seconds=5 --sweep_ms=200
//
// Setup: one syncpool::PoolResource with its own Sweeper (background = false: this program
// runs the epochs), sized so that each CPU caches --cached_blocks / (CPUs * sizes) blocks of
// each of the --sizes per generation, and filled so that the caches hold about --cached_blocks
// blocks (Stats::cached_blocks() is printed after the first fill, and averaged over the
// moments just before each sweep).
//
// Workers: --threads threads (one per CPU by default), each pinned to one CPU, time every
// allocate + deallocate pair (through std::pmr::memory_resource, the block written once, the
// sizes in turn) with the time stamp counter (steady_clock where there is none) and count the
// samples in a preallocated histogram per thread (exact up to 2048 ticks, 0.1 % above): nothing
// allocates while measuring.
//
// Two runs of --seconds each, one after the other:
//
//   no_sweeps      the caches full, no sweep, no fill: what the fast path costs here.
//   sweep_latency  every --sweep_ms milliseconds this program's main thread runs SweepNow();
//                  between two sweeps the caches are filled again, so that every sweep finds
//                  about --cached_blocks blocks and releases a good share of them.
//
// The fill: the sizes are split in two halves (every other size, smallest first), and before
// each sweep one half is refilled on every CPU, the halves in turn: by the first worker pinned
// there (between two samples, so the fill is never timed) or, on a CPU without a worker, by the
// main thread. A refill allocates a whole generation's capacity of each size of the half and
// frees it again, on that CPU, so that the half sits in the primary generation afterwards.
// With Go's retention (a sweep demotes the whole primary generation), each sweep then finds
// one half fresh in the primary generation and the other in the victim generation, and
// releases the latter: half of what is cached. A retention that keeps what was used during the
// epoch (the refill takes the victims back) releases a half every other sweep instead. Either
// way every sweep runs over about --cached_blocks blocks; what it released is reported (the
// Stats::swept_blocks delta).
//
// The main thread is pinned to a CPU without a worker when there is one (--threads below the
// number of CPUs): then the sweeps interfere with the workers only through the library
// (membarrier fences, caches closed to restartable sequences, locks), not by taking their
// CPU. With one worker per CPU, the sweeping thread also preempts a worker, as any thread
// does on a busy machine; the involuntary context switches of the workers are reported.
//
// For each run it prints the percentiles of all samples, and for the sweep run also of the
// samples that overlapped a sweep (SweepNow() running), a fill, or neither; the tail beyond
// 2 us; the same percentiles corrected for coordinated omission (as HdrHistogram does: a sample
// longer than the mean loop period stands for the requests that would have arrived meanwhile
// and waited, so a stall of 100 us counts as thousands of slow requests, not one); and, last,
// one line for machines:
//
//   RESULT <no_sweeps|sweep_latency> sweeps=<n> p50_ns=<n> p99_ns=<n> p999_ns=<n> max_ns=<n>
//
// Flags (--name=value or --name value):
//
//   --threads=N           worker threads (default: the CPUs this process may run on)
//   --seconds=3           length of each run (a decimal number)
//   --sweep_ms=100        time between two sweeps (when a fill and a sweep take longer, the
//                         next sweep starts at once; such late sweeps are counted)
//   --cached_blocks=1048576  blocks the caches hold at each sweep
//   --sizes=64,96,128,256,512,1024  the block sizes (bytes, at most 65536; 2 to 12 of them)

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "bench/flags.h"
#include "bench/util/histogram.h"
#include "bench/util/latency_report.h"
#include "bench/util/tsc_timer.h"
#include "syncpool/mimalloc_resource.h"
#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "tests/cpu_affinity.h"

namespace {

using ::syncpool::bench::CalibrateTicks;
using ::syncpool::bench::EndTicks;
using ::syncpool::bench::Histogram;
using ::syncpool::bench::Ns;
using ::syncpool::bench::PrintPercentiles;
using ::syncpool::bench::PrintTail;
using ::syncpool::bench::ParseLong;
using ::syncpool::bench::StartTicks;
using ::syncpool::bench::TickSource;
using ::syncpool::testing::AllowedCpus;
using ::syncpool::testing::PinTo;
using ::syncpool::testing::SetAffinity;

using Clock = std::chrono::steady_clock;

// -----------------------------------------------------------------------------
// Command line
// -----------------------------------------------------------------------------

struct Flags {
  int threads = 0;                                            // --threads; 0: one per CPU.
  double seconds = 3;                                         // --seconds
  int sweep_ms = 100;                                         // --sweep_ms
  long cached_blocks = 1L << 20;                              // --cached_blocks
  std::vector<size_t> sizes = {64, 96, 128, 256, 512, 1024};  // --sizes
};

void Usage() {
  std::fprintf(stderr,
               "usage: sweep_latency [--threads=N] [--seconds=3] [--sweep_ms=100]\n"
               "                     [--cached_blocks=1048576] [--sizes=64,96,128,256,512,1024]\n");
}

bool ParseSizes(std::string_view text, std::vector<size_t>* out) {
  std::vector<size_t> sizes;
  for (const std::string& item : ::syncpool::bench::SplitCommas(text)) {
    long value = 0;
    if (!ParseLong(item, 1, 65536, &value)) return false;
    sizes.push_back(static_cast<size_t>(value));
  }
  if (sizes.size() < 2 || sizes.size() > 12) return false;
  *out = std::move(sizes);
  return true;
}

// Returns false (after a message) on any error.
bool ParseFlags(int argc, char** argv, Flags* flags) {
  ::syncpool::bench::FlagParser parser("sweep_latency");
  parser.Int("threads", 1, 1024, &flags->threads);
  parser.Double("seconds", 0.1, 600, &flags->seconds);
  parser.Int("sweep_ms", 1, 60'000, &flags->sweep_ms);
  parser.Long("cached_blocks", 1, 1L << 30, &flags->cached_blocks);
  parser.Custom("sizes", [flags](std::string_view v) { return ParseSizes(v, &flags->sizes); });
  return parser.Parse(argc, argv);
}

// -----------------------------------------------------------------------------
// Shared state
// -----------------------------------------------------------------------------

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

long InvoluntarySwitches() {
  rusage usage;
  if (getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  return usage.ru_nivcsw;
}

// Allocates a generation's capacity of every size of half `half` (0: even positions, 1: odd
// ones, -1: all) and frees it again, on the calling thread's CPU.
void Fill(std::pmr::memory_resource* mr, const Config& config, int half, std::vector<void*>& hold) {
  for (size_t k = 0; k < config.sizes.size(); ++k) {
    if (half >= 0 && static_cast<int>(k % 2) != half) continue;
    const size_t size = config.sizes[k];
    for (uint32_t i = 0; i < config.per_cpu; ++i) hold[i] = mr->allocate(size);
    for (uint32_t i = 0; i < config.per_cpu; ++i) mr->deallocate(hold[i], size);
  }
}

// A worker: pinned to its CPU, times allocate + deallocate pairs into the histograms of the
// current phase (the idle phase's are discarded), fills its CPU's cache when asked.
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

// -----------------------------------------------------------------------------
// The driver (main thread)
// -----------------------------------------------------------------------------

class Driver {
 public:
  Driver(syncpool::PoolResource* pool, syncpool::Sweeper* sweeper, const Config& config,
         std::vector<int> cpus, std::vector<std::unique_ptr<Worker>>* workers, int home_cpu)
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

  Control& control() { return control_; }

  // Starts `phase` and, unless it is kExit, waits until every worker has closed the books of
  // the previous one.
  void SetPhase(uint64_t phase) {
    control_.phase_acks.store(0, std::memory_order_relaxed);
    const uint64_t word = control_.word.load(std::memory_order_relaxed);
    control_.word.store((word & ~uint64_t{3}) | phase, std::memory_order_release);
    if (phase == kExit) return;
    const int n = static_cast<int>(workers_->size());
    while (control_.phase_acks.load(std::memory_order_acquire) < n) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // Refills `half` (-1: every size) on every CPU and waits until it is done.
  void FillAll(int half) {
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

  // One sweep, marked for the workers. Returns its duration.
  Clock::duration Sweep() {
    control_.activity.fetch_add(kSweepStep, std::memory_order_relaxed);
    const Clock::time_point t0 = Clock::now();
    sweeper_->SweepNow();
    const Clock::time_point t1 = Clock::now();
    control_.activity.fetch_add(kSweepStep, std::memory_order_relaxed);
    return t1 - t0;
  }

  void Home() {
    if (home_cpu_ >= 0) {
      PinTo(home_cpu_);
    } else {
      SetAffinity(cpus_);
    }
  }

 private:
  syncpool::PoolResource* const pool_;
  syncpool::Sweeper* const sweeper_;
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

void PrintResult(const char* name, long sweeps, const Histogram& h, double ns_per_tick) {
  std::printf("RESULT %s sweeps=%ld p50_ns=%ld p99_ns=%ld p999_ns=%ld max_ns=%ld\n", name, sweeps,
              Ns(h.Percentile(0.5), ns_per_tick), Ns(h.Percentile(0.99), ns_per_tick),
              Ns(h.Percentile(0.999), ns_per_tick), Ns(h.max(), ns_per_tick));
  std::fflush(stdout);
}

void PrintRun(const char* name, const RunResult& r, bool sweeps, double ns_per_tick) {
  std::printf(
      "%s: %.2f s, %llu samples (%.1f M/s per worker), %ld involuntary context switches"
      " of the workers\n",
      name, r.seconds, static_cast<unsigned long long>(r.samples),
      static_cast<double>(r.samples) / std::max(r.seconds, 1e-9) / 1e6 / std::max(r.workers, 1),
      r.involuntary_switches);
  PrintPercentiles("all", r.all, ns_per_tick);
  PrintTail("", r.all, ns_per_tick);
  if (sweeps) {
    PrintPercentiles("during sweeps", r.by_overlap[kInSweep], ns_per_tick);
    PrintTail("during sweeps ", r.by_overlap[kInSweep], ns_per_tick);
    PrintPercentiles("during fills", r.by_overlap[kInFill], ns_per_tick);
    PrintTail("during fills ", r.by_overlap[kInFill], ns_per_tick);
    PrintPercentiles("otherwise", r.by_overlap[kQuiet], ns_per_tick);
    PrintTail("otherwise ", r.by_overlap[kQuiet], ns_per_tick);
  }
  PrintPercentiles("CO-corrected", r.corrected, ns_per_tick);
}

std::string CpuList(const std::vector<int>& cpus) {
  std::string s;
  for (int cpu : cpus) s += (s.empty() ? "" : ",") + std::to_string(cpu);
  return s;
}

std::string SizeList(const std::vector<size_t>& sizes) {
  std::string s;
  for (size_t size : sizes) s += (s.empty() ? "" : ",") + std::to_string(size);
  return s;
}

int Run(const Flags& flags) {
  // The CPUs this process may run on.
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.empty()) {
    std::fprintf(stderr, "sweep_latency: cannot read the CPU affinity\n");
    return 1;
  }
  const int num_cpus = static_cast<int>(cpus.size());
  const int threads = flags.threads > 0 ? flags.threads : num_cpus;
  // The main thread sweeps from a CPU without a worker when there is one.
  const int home_cpu = threads < num_cpus ? cpus[static_cast<size_t>(threads)] : -1;

  Config config;
  config.sizes = flags.sizes;
  std::sort(config.sizes.begin(), config.sizes.end());
  const size_t largest = config.sizes.back();
  config.per_cpu = static_cast<uint32_t>(std::max<long>(
      1, flags.cached_blocks /
             (static_cast<long>(num_cpus) * static_cast<long>(config.sizes.size()))));

  syncpool::Sweeper::Options sweeper_options;
  sweeper_options.background = false;  // This program runs the epochs.
  syncpool::Sweeper sweeper(sweeper_options);
  syncpool::Options options;
  options.sweeper = &sweeper;
  options.max_block_size = largest;
  options.max_blocks_per_class = config.per_cpu;
  options.per_cpu_class_bytes = size_t{config.per_cpu} * largest;
  syncpool::PoolResource pool(options);
  std::pmr::memory_resource* const mr = &pool;

  const double ns_per_tick = CalibrateTicks(std::chrono::milliseconds(200));
  // The cost of the timer itself: the median of empty timed regions.
  double timer_ns = 0;
  {
    std::vector<uint64_t> empty(10001);
    for (uint64_t& e : empty) {
      const uint64_t t0 = StartTicks();
      e = EndTicks() - t0;
    }
    std::nth_element(empty.begin(), empty.begin() + 5000, empty.end());
    timer_ns = static_cast<double>(empty[5000]) * ns_per_tick;
  }

  std::printf("sweep_latency: %d worker threads on CPUs %s; the sweeping thread %s\n", threads,
              CpuList(cpus).c_str(),
              home_cpu >= 0
                  ? ("pinned to CPU " + std::to_string(home_cpu) + " (no worker there)").c_str()
                  : "shares the workers' CPUs (unpinned)");
  std::printf(
      "resource: sizes %s B, %u blocks per CPU, size and generation, rseq %s,"
      " upstream %s\n",
      SizeList(config.sizes).c_str(), config.per_cpu, pool.uses_rseq() ? "yes" : "no",
      pool.upstream() == syncpool::MimallocResource::Get() ? "mimalloc" : "new_delete");
  std::printf(
      "timer: %s, %.3f ns per tick, an empty timed region takes %.0f ns (included below)\n"
      "CO-corrected: the percentiles as requests arriving at each worker's mean rate would"
      " see them (HdrHistogram's correction for coordinated omission)\n",
      TickSource(), ns_per_tick, timer_ns);

  // Workers: worker i on cpus[i % CPUs]; the first on each CPU fills it.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->cpu = cpus[static_cast<size_t>(i % num_cpus)];
    w->fills = i < num_cpus;
    if (w->fills) w->hold.resize(config.per_cpu);
    workers.push_back(std::move(w));
  }
  Driver driver(&pool, &sweeper, config, cpus, &workers, home_cpu);
  driver.Home();
  Control& control = driver.control();
  for (auto& w : workers) {
    Worker* self = w.get();
    self->thread =
        std::thread([mr, &config, &control, self] { WorkerLoop(mr, config, &control, self); });
  }
  while (control.ready.load(std::memory_order_acquire) < threads) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // Warm up, unrecorded.

  const auto duration =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(flags.seconds));

  // Fill everything, then the baseline: no sweeps, no fills.
  driver.FillAll(-1);
  std::printf("filled: %llu blocks cached\n\n",
              static_cast<unsigned long long>(pool.GetStats().cached_blocks()));
  std::fflush(stdout);
  driver.SetPhase(kBaseline);
  std::this_thread::sleep_for(duration);
  driver.SetPhase(kIdle);
  const RunResult baseline = Collect(workers, kBaseline, ns_per_tick);
  PrintRun("no_sweeps", baseline, false, ns_per_tick);
  PrintResult("no_sweeps", 0, baseline.all, ns_per_tick);
  std::printf("\n");

  // Reach the rotation's steady state (unrecorded).
  long epoch = 0;
  for (; epoch < 4; ++epoch) {
    driver.FillAll(static_cast<int>(epoch % 2));
    driver.Sweep();
  }

  // The sweep run: refill one half, wait for the tick, sweep.
  struct SweepRecord {
    uint64_t cached;
    uint64_t released;
    double ms;
  };
  std::vector<SweepRecord> records;
  records.reserve(static_cast<size_t>(flags.seconds * 1000 / flags.sweep_ms) + 16);
  const auto interval = std::chrono::milliseconds(flags.sweep_ms);
  int late = 0;
  driver.SetPhase(kSweeps);
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + duration;
  Clock::time_point next = start + interval;
  while (next < end) {
    driver.FillAll(static_cast<int>(epoch % 2));
    if (Clock::now() > next) {
      ++late;
      next = Clock::now();
    }
    std::this_thread::sleep_until(next);
    const syncpool::Stats before = pool.GetStats();
    const Clock::duration took = driver.Sweep();
    const syncpool::Stats after = pool.GetStats();
    records.push_back({before.cached_blocks(), after.swept_blocks - before.swept_blocks,
                       std::chrono::duration<double, std::milli>(took).count()});
    ++epoch;
    next += interval;
  }
  std::this_thread::sleep_until(end);
  driver.SetPhase(kIdle);
  const syncpool::Stats final_stats = pool.GetStats();
  const RunResult swept = Collect(workers, kSweeps, ns_per_tick);

  const long sweeps = static_cast<long>(records.size());
  double cached = 0, released = 0, ms = 0, max_ms = 0;
  uint64_t min_cached = ~uint64_t{0}, min_released = ~uint64_t{0}, max_released = 0;
  for (const SweepRecord& s : records) {
    cached += static_cast<double>(s.cached);
    min_cached = std::min(min_cached, s.cached);
    released += static_cast<double>(s.released);
    min_released = std::min(min_released, s.released);
    max_released = std::max(max_released, s.released);
    ms += s.ms;
    max_ms = std::max(max_ms, s.ms);
  }
  const double n = std::max<double>(1, static_cast<double>(sweeps));
  if (sweeps == 0) min_cached = min_released = 0;
  std::printf(
      "sweeps: %ld, every %d ms (%d late: fill and sweep outlasted the interval)\n"
      "  before a sweep %.0f blocks cached on average (at least %llu); a sweep released"
      " %.0f blocks on average (%llu to %llu)\n"
      "  a sweep took %.2f ms on average (max %.2f ms); a fill took %.2f ms per CPU;"
      " grows so far %llu\n",
      sweeps, flags.sweep_ms, late, cached / n, static_cast<unsigned long long>(min_cached),
      released / n, static_cast<unsigned long long>(min_released),
      static_cast<unsigned long long>(max_released), ms / n, max_ms, swept.fill_ms,
      static_cast<unsigned long long>(final_stats.grows));
  PrintRun("sweep_latency", swept, true, ns_per_tick);
  PrintResult("sweep_latency", sweeps, swept.all, ns_per_tick);

  driver.SetPhase(kExit);
  for (auto& w : workers) w->thread.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    Usage();
    return 2;
  }
  return Run(flags);
}
