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
// Setup: one PoolResource with its own Sweeper (background = false: this program
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
//   --slice_us=100        Sweeper::Options::slice: a sweep lets the CPU go after each slice of
//                         this many microseconds of work (0: sweeps run without pausing)
//   --pause_us=50         Sweeper::Options::pause: for this long (0: sched_yield())
//   --sweeper_nice=0      the nice value of the thread that sweeps (0 to 19), set before the
//                         sweep run: a lower scheduling priority instead of, or beside, slices

#include <sys/resource.h>

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

#include "bench/flags.h"
#include "bench/sweep_latency_workers.h"
#include "bench/util/histogram.h"
#include "bench/util/latency_report.h"
#include "bench/util/tsc_timer.h"
#include "syncpool/mimalloc_resource.h"
#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "tests/cpu_affinity.h"

namespace syncpool {
namespace bench {
namespace sweep_latency {
namespace {

using ::syncpool::testing::AllowedCpus;

// -----------------------------------------------------------------------------
// Command line
// -----------------------------------------------------------------------------

struct Flags {
  int threads = 0;                                            // --threads; 0: one per CPU.
  double seconds = 3;                                         // --seconds
  int sweep_ms = 100;                                         // --sweep_ms
  long cached_blocks = 1L << 20;                              // --cached_blocks
  std::vector<size_t> sizes = {64, 96, 128, 256, 512, 1024};  // --sizes
  int slice_us = 100;                                         // --slice_us
  int pause_us = 50;                                          // --pause_us
  int sweeper_nice = 0;                                       // --sweeper_nice
};

void Usage() {
  std::fprintf(stderr,
               "usage: sweep_latency [--threads=N] [--seconds=3] [--sweep_ms=100]\n"
               "                     [--cached_blocks=1048576] [--sizes=64,96,128,256,512,1024]\n"
               "                     [--slice_us=100] [--pause_us=50] [--sweeper_nice=0]\n");
}

bool ParseSizes(std::string_view text, std::vector<size_t>* out) {
  std::vector<size_t> sizes;
  for (const std::string& item : SplitCommas(text)) {
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
  FlagParser parser("sweep_latency");
  parser.Int("threads", 1, 1024, &flags->threads);
  parser.Double("seconds", 0.1, 600, &flags->seconds);
  parser.Int("sweep_ms", 1, 60'000, &flags->sweep_ms);
  parser.Long("cached_blocks", 1, 1L << 30, &flags->cached_blocks);
  parser.Custom("sizes", [flags](std::string_view v) { return ParseSizes(v, &flags->sizes); });
  parser.Int("slice_us", 0, 1'000'000, &flags->slice_us);
  parser.Int("pause_us", 0, 1'000'000, &flags->pause_us);
  parser.Int("sweeper_nice", 0, 19, &flags->sweeper_nice);
  return parser.Parse(argc, argv);
}

// -----------------------------------------------------------------------------
// Reports
// -----------------------------------------------------------------------------

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

// What one sweep of the sweep run found and did.
struct SweepRecord {
  uint64_t cached;    // Stats::cached_blocks() just before it.
  uint64_t released;  // The Stats::swept_blocks delta.
  double ms;          // How long SweepNow() took.
};

// The sweeps' summary: how many, how much each found cached and released, how long they and
// the fills took.
void PrintSweeps(const std::vector<SweepRecord>& records, int sweep_ms, int late, double fill_ms,
                 uint64_t grows, uint64_t pauses) {
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
      "  a sweep took %.2f ms on average (max %.2f ms), pausing %.1f times (slices);"
      " a fill took %.2f ms per CPU; grows so far %llu\n",
      sweeps, sweep_ms, late, cached / n, static_cast<unsigned long long>(min_cached),
      released / n, static_cast<unsigned long long>(min_released),
      static_cast<unsigned long long>(max_released), ms / n, max_ms,
      static_cast<double>(pauses) / n, fill_ms,
      static_cast<unsigned long long>(grows));
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

  Sweeper::Options sweeper_options;
  sweeper_options.background = false;  // This program runs the epochs.
  sweeper_options.slice = std::chrono::microseconds(flags.slice_us);
  sweeper_options.pause = std::chrono::microseconds(flags.pause_us);
  Sweeper sweeper(sweeper_options);
  Options options;
  options.sweeper = &sweeper;
  options.max_block_size = largest;
  options.max_blocks_per_class = config.per_cpu;
  options.per_cpu_class_bytes = size_t{config.per_cpu} * largest;
  PoolResource pool(options);
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
      pool.upstream() == MimallocResource::Get() ? "mimalloc" : "new_delete");
  std::printf("sweeps: in slices of %d us, pausing %d us between them (%s); sweeping thread"
              " at nice %d\n",
              flags.slice_us, flags.pause_us, flags.pause_us > 0 ? "sleep" : "sched_yield",
              flags.sweeper_nice);
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

  // The sweep run: refill one half, wait for the tick, sweep. The thread that sweeps at its
  // priority (--sweeper_nice); a nice value applies to one thread on Linux.
  if (flags.sweeper_nice != 0 && setpriority(PRIO_PROCESS, 0, flags.sweeper_nice) != 0) {
    std::perror("sweep_latency: setpriority");
    return 1;
  }
  const uint64_t pauses_before = sweeper.pauses();
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
    const Stats before = pool.GetStats();
    const Clock::duration took = driver.Sweep();
    const Stats after = pool.GetStats();
    records.push_back({before.cached_blocks(), after.swept_blocks - before.swept_blocks,
                       std::chrono::duration<double, std::milli>(took).count()});
    ++epoch;
    next += interval;
  }
  std::this_thread::sleep_until(end);
  driver.SetPhase(kIdle);
  const Stats final_stats = pool.GetStats();
  const RunResult swept = Collect(workers, kSweeps, ns_per_tick);

  const long sweeps = static_cast<long>(records.size());
  PrintSweeps(records, flags.sweep_ms, late, swept.fill_ms, final_stats.grows,
              sweeper.pauses() - pauses_before);
  PrintRun("sweep_latency", swept, true, ns_per_tick);
  PrintResult("sweep_latency", sweeps, swept.all, ns_per_tick);

  driver.SetPhase(kExit);
  for (auto& w : workers) w->thread.join();
  return 0;
}

}  // namespace
}  // namespace sweep_latency
}  // namespace bench
}  // namespace syncpool

int main(int argc, char** argv) {
  namespace sl = ::syncpool::bench::sweep_latency;
  sl::Flags flags;
  if (!sl::ParseFlags(argc, argv, &flags)) {
    sl::Usage();
    return 2;
  }
  return sl::Run(flags);
}
