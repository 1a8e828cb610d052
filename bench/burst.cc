// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/burst.cc
// -----------------------------------------------------------------------------
//
// Does memory go back to the system after a burst? This tool measures the process's resident
// set while several threads allocate and free buffers through one memory resource, and after
// they all go idle:
//
//   bazel run -c opt //bench:burst
//   bazel run -c opt //bench:burst -- --csv=/tmp/burst.csv
//   bash scripts/plot_memory.sh /tmp/burst.csv /tmp/burst.png   # the chart, with gnuplot
//
// The burst: each of --threads threads allocates buffers of mixed sizes (log-uniform between
// 16 B and 1 MiB), writes every byte of each (so that its pages are resident), and after each
// allocation frees one of its live buffers at random half of the time, until the threads
// together hold --peak_mib MiB. When all have got there, each frees everything it holds and
// then blocks (the threads stay alive, idle, unless --workers_exit). "Idle" is the moment the
// last thread has freed its last buffer.
//
// What is measured: the resident set size of the process, read from /proc/self/statm every
// 10 ms by a sampling thread, from before the burst until --idle_intervals sweep intervals
// after going idle. Each resource runs in a fresh child process (this program, executed again
// with --child=NAME), so that no resource inherits another's heap:
//
//   syncpool             a syncpool::PoolResource over its default upstream (mimalloc, loaded
//                        locally), swept by its own Sweeper every --sweep_ms milliseconds, with
//                        max_block_size --max_block_kib (1 MiB by default: every buffer of the
//                        burst goes through the caches)
//   synchronized_pool    std::pmr::synchronized_pool_resource, default options, over
//                        new_delete_resource()
//   unsynchronized_pool  std::pmr::unsynchronized_pool_resource, default options, guarded by one
//                        std::mutex so that the same threads can share it
//   new_delete           std::pmr::new_delete_resource(): glibc's malloc, as it behaves (this tool
//                        never calls malloc_trim)
//   mimalloc             syncpool::MimallocResource::Get() alone, without a pool
//   string_pool          a pool of growable buffers instead of a memory resource: the threads
//                        Get a std::string from a syncpool::Pool<std::string> (reset hook:
//                        clear(), so the capacity stays), write a size log-uniform between
//                        1 KiB and 16 MiB into it, and Put it back where the others free; one
//                        thread first writes a --outlier_mib string and Puts it back at once
//                        (one request that grew its buffer). Options::max_object_bytes is
//                        --max_object_mib MiB (0: none), the Sweeper its own every --sweep_ms.
//   string_new           the same workload with a new std::string each time, dropped where
//                        the pool gets one back: what glibc alone does with these strings.
//                        Both string children fix glibc's mmap threshold at 128 KiB
//                        (mallopt(M_MMAP_THRESHOLD)), so that a large string freed goes back to
//                        the system at once and what stays resident is what the pool keeps.
//
// For each resource the child prints a few lines describing it, then one line, last:
//
//   RESULT <resource> baseline_mib=<n> peak_mib=<n> final_mib=<n> settle_ms=<n>
//
// baseline: the resident set just before the burst (the resource and the threads exist);
// peak: the largest sample; final: the last sample; settle_ms: the time from going idle until
// the resident set stays within baseline + 5 % of (peak - baseline) for the rest of the run
// (the first sample from which every later one is within that band), -1 if the last sample is
// still above it. The string children also print
//
//   OUTLIER <resource> largest_get_mib=<n> oversized=<n>
//
// largest_get_mib: the largest capacity a Get handed out after the outlier was put back (at or
// above --outlier_mib when the outlier survived its Put); oversized: the objects Put destroyed
// as larger than max_object_bytes. With --csv=FILE the parent also writes FILE (resource,
// milliseconds since going idle, resident MiB: one row per sample), which
// scripts/plot_memory.sh draws.
//
// Flags (--name=value or --name value):
//
//   --sweep_ms=100        the syncpool child's sweep interval
//   --idle_intervals=5    how long to watch after going idle, in sweep intervals
//   --peak_mib=512        what the threads hold together at the peak
//   --threads=4
//   --max_block_kib=1024  the syncpool child's Options::max_block_size
//   --max_object_mib=64   the string_pool child's Options::max_object_bytes, in MiB (0: none)
//   --outlier_mib=256     the string children's outlier (0: none)
//   --resources=a,b       run only these, in this order
//   --csv=FILE.csv        write the samples there
//
// Experiments (docs/memory.md shows what each one found; none is on by default):
//
//   --free_others         at the peak, thread t frees the buffers of thread t + 1 instead of
//                         its own: every final free is made by another thread than the one
//                         that allocated
//   --workers_exit        the threads end once they have freed their buffers
//   --owners_collect      when the watch is over, every (blocked) thread calls
//                         MimallocResource::Collect(true) on itself, and the watch goes on for
//                         as long again (syncpool and mimalloc children; a no-op for the others)
//   --collect_after_sweep the syncpool child runs its epochs from a thread of this program
//                         instead of the sweeper's thread: SweepNow(), then
//                         MimallocResource::Collect(true), as a sweeper hook would
//
// mimalloc reads its options from MIMALLOC_* environment variables when it is loaded; the
// children inherit the environment, so e.g. MIMALLOC_DECOMMIT_DELAY=0 changes them and
// MIMALLOC_VERBOSE=1 shows those in use.

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/burst_workload.h"
#include "bench/flags.h"
#include "bench/util/child_process.h"
#include "bench/util/csv.h"
#include "syncpool/mimalloc_resource.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace bench {
namespace burst {
namespace {

void Usage() {
  std::fprintf(
      stderr,
      "usage: burst [--csv=FILE.csv] [--sweep_ms=100] [--peak_mib=512] [--threads=4]\n"
      "             [--idle_intervals=5] [--max_block_kib=1024] [--resources=a,b,...]\n"
      "             [--max_object_mib=64] [--outlier_mib=256]\n"
      "             [--collect_after_sweep] [--workers_exit] [--free_others] [--owners_collect]\n"
      "resources: syncpool synchronized_pool unsynchronized_pool new_delete mimalloc string_pool\n"
      "           string_new\n");
}

bool IsResource(std::string_view name) {
  return std::find(std::begin(kResources), std::end(kResources), name) != std::end(kResources);
}

// Returns false (after a message) on any error.
bool ParseFlags(int argc, char** argv, Flags* flags) {
  syncpool::bench::FlagParser parser("burst");
  parser.Int("sweep_ms", 1, 60'000, &flags->sweep_ms);
  parser.Int("peak_mib", 1, 1 << 20, &flags->peak_mib);
  parser.Int("threads", 1, 256, &flags->threads);
  parser.Int("idle_intervals", 1, 1000, &flags->idle_intervals);
  parser.Int("max_block_kib", 1, 1024, &flags->max_block_kib);
  parser.Int("max_object_mib", 0, 1 << 20, &flags->max_object_mib);
  parser.Int("outlier_mib", 0, 1 << 16, &flags->outlier_mib);
  parser.String("csv", &flags->csv);
  parser.Custom("resources", [flags](std::string_view value) {
    flags->resources = syncpool::bench::SplitCommas(value);
    return !flags->resources.empty() &&
           std::all_of(flags->resources.begin(), flags->resources.end(), IsResource);
  });
  parser.Custom("child", [flags](std::string_view value) {
    flags->child = std::string(value);
    return IsResource(value);
  });
  parser.Switch("collect_after_sweep", &flags->collect_after_sweep);
  parser.Switch("workers_exit", &flags->workers_exit);
  parser.Switch("free_others", &flags->free_others);
  parser.Switch("owners_collect", &flags->owners_collect);
  return parser.Parse(argc, argv);
}

// syncpool: a PoolResource over DefaultUpstream(), with a Sweeper of its own every --sweep_ms.
//
// --collect_after_sweep (an experiment, for the investigation in docs/memory.md): the sweeper
// runs no thread; a thread of this program calls SweepNow() every --sweep_ms and then
// MimallocResource::Collect(true), as a sweeper hook that collects the upstream after each
// epoch would.
int SyncpoolChild(const Flags& flags) {
  const auto interval = std::chrono::milliseconds(flags.sweep_ms);
  syncpool::Sweeper::Options sweeper_options;
  sweeper_options.interval = interval;
  sweeper_options.background = !flags.collect_after_sweep;
  syncpool::Sweeper sweeper(sweeper_options);
  syncpool::Options options;
  options.sweeper = &sweeper;
  options.max_block_size = static_cast<size_t>(flags.max_block_kib) * 1024;
  syncpool::PoolResource pool(options);

  syncpool::MimallocResource* const mimalloc = syncpool::MimallocResource::Get();
  const bool over_mimalloc = pool.upstream() == mimalloc && mimalloc != nullptr;
  std::printf("syncpool: PoolResource, max_block_size %d KiB, upstream %s, per-CPU caches %s\n",
              flags.max_block_kib,
              over_mimalloc ? "mimalloc (MimallocResource)" : "new_delete_resource()",
              pool.uses_rseq() ? "rseq" : "locked");
  std::printf("syncpool: own Sweeper every %d ms%s\n", flags.sweep_ms,
              flags.collect_after_sweep
                  ? ", driven by this program: SweepNow() then MimallocResource::Collect(true)"
                  : " (background thread)");

  std::atomic<bool> stop_driver{false};
  std::thread driver;
  if (flags.collect_after_sweep) {
    driver = std::thread([&] {
      Clock::time_point next = Clock::now() + interval;
      while (!stop_driver.load()) {
        std::this_thread::sleep_until(next);
        next += interval;
        sweeper.SweepNow();
        if (over_mimalloc) mimalloc->Collect(/*force=*/true);
      }
    });
  }
  const auto collect_mimalloc = [&] {
    if (over_mimalloc) mimalloc->Collect(/*force=*/true);
  };
  const int status = RunBurst(flags, "syncpool", ThroughResource(flags, &pool, collect_mimalloc), [&] {
    const syncpool::Stats stats = pool.GetStats();
    std::printf(
        "syncpool: at the end: cached %.1f MiB, swept %.1f MiB in %llu epochs, "
        "%llu spills\n",
        Mib(stats.cached_bytes()), Mib(stats.swept_bytes),
        static_cast<unsigned long long>(stats.epochs),
        static_cast<unsigned long long>(stats.spills));
  });
  stop_driver.store(true);
  if (driver.joinable()) driver.join();
  return status;
}

// string_pool and string_new (see the top of the file).
int StringChild(const Flags& flags) {
  const bool pooled = flags.child == "string_pool";
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  syncpool::Sweeper::Options sweeper_options;
  sweeper_options.interval = std::chrono::milliseconds(flags.sweep_ms);
  syncpool::Sweeper sweeper(sweeper_options);
  syncpool::Options options;
  options.sweeper = &sweeper;
  options.max_object_bytes = static_cast<size_t>(flags.max_object_mib) * kMiB;
  syncpool::Pool<std::string> pool([] { return std::make_unique<std::string>(); },
                                   [](std::string& s) { s.clear(); }, options);
  StringSource source{pooled ? &pool : nullptr};
  if (pooled) {
    std::printf("%s: syncpool::Pool<std::string>, reset clear(), max_object_bytes %d MiB, "
                "own Sweeper every %d ms\n",
                flags.child.c_str(), flags.max_object_mib, flags.sweep_ms);
  } else {
    std::printf("%s: a new std::string for each buffer, deleted when dropped\n",
                flags.child.c_str());
  }
  std::printf("%s: strings of %zu KiB to %zu MiB, one outlier of %d MiB; "
              "mallopt(M_MMAP_THRESHOLD, 128 KiB)\n",
              flags.child.c_str(), kMinString / 1024, kMaxString / kMiB, flags.outlier_mib);
  const int status = RunBurst(
      flags, flags.child,
      [&](int index, Phases* phases) { StringBurstThread(index, &source, flags, phases); },
      [&] {
        if (!pooled) return;
        const syncpool::Stats stats = pool.GetStats();
        std::printf("%s: at the end: cached %llu strings owning %.1f MiB, swept %.1f MiB in %llu "
                    "epochs, %llu over budget, %llu spills\n",
                    flags.child.c_str(), static_cast<unsigned long long>(stats.cached_blocks()),
                    Mib(stats.cached_bytes()), Mib(stats.swept_bytes),
                    static_cast<unsigned long long>(stats.epochs),
                    static_cast<unsigned long long>(stats.over_budget_blocks),
                    static_cast<unsigned long long>(stats.spills));
      });
  std::printf("OUTLIER %s largest_get_mib=%.1f oversized=%llu\n", flags.child.c_str(),
              Mib(source.largest_get.load()),
              static_cast<unsigned long long>(pool.GetStats().oversized_objects));
  std::fflush(stdout);
  return status;
}

int Child(const Flags& flags) {
  const std::string& name = flags.child;
  const std::function<void()> nothing = [] {};
  if (name == "string_pool" || name == "string_new") {
    std::printf("%s: %d threads, peak %d MiB\n", name.c_str(), flags.threads, flags.peak_mib);
    return StringChild(flags);
  }
  std::printf("%s: %d threads, peak %d MiB, buffers of %zu B to %zu KiB\n", name.c_str(),
              flags.threads, flags.peak_mib, kMinBuffer, kMaxBuffer / 1024);
  if (name == "syncpool") return SyncpoolChild(flags);
  if (name == "synchronized_pool") {
    std::pmr::synchronized_pool_resource pool;
    std::printf(
        "%s: std::pmr::synchronized_pool_resource, largest pooled block %zu B, "
        "over new_delete_resource()\n",
        name.c_str(), pool.options().largest_required_pool_block);
    return RunBurst(flags, name, ThroughResource(flags, &pool, nothing), nothing);
  }
  if (name == "unsynchronized_pool") {
    std::pmr::unsynchronized_pool_resource pool;
    LockedResource locked(&pool);
    std::printf(
        "%s: std::pmr::unsynchronized_pool_resource, largest pooled block %zu B, "
        "over new_delete_resource(); guarded by one std::mutex, shared by %d threads\n",
        name.c_str(), pool.options().largest_required_pool_block, flags.threads);
    return RunBurst(flags, name, ThroughResource(flags, &locked, nothing), nothing);
  }
  if (name == "new_delete") {
    std::printf("%s: std::pmr::new_delete_resource() (glibc malloc; no malloc_trim)\n",
                name.c_str());
    return RunBurst(flags, name, ThroughResource(flags, std::pmr::new_delete_resource(), nothing),
                    nothing);
  }
  // mimalloc
  syncpool::MimallocResource* const mimalloc = syncpool::MimallocResource::Get();
  if (mimalloc == nullptr) {
    std::printf("%s: libmimalloc.so.2 cannot be loaded\n", name.c_str());
    return 1;
  }
  std::printf("%s: syncpool::MimallocResource::Get() alone (mi_malloc / mi_free)\n", name.c_str());
  return RunBurst(
      flags, name,
      ThroughResource(flags, mimalloc, [mimalloc] { mimalloc->Collect(/*force=*/true); }),
      nothing);
}

// -----------------------------------------------------------------------------
// The parent: one child per resource, the CSV and the chart
// -----------------------------------------------------------------------------

struct Series {
  std::string resource;
  std::vector<std::string> rows;  // "t_ms,rss_mib"
};

// Runs this program again with --child=`resource` and the other flags, forwards its output
// except the SAMPLE lines, which go into `series`. Returns whether it printed a RESULT line and
// exited with status 0.
bool RunChild(const Flags& flags, const std::string& resource, Series* series) {
  std::vector<std::string> args = {
      "burst",
      "--child=" + resource,
      "--sweep_ms=" + std::to_string(flags.sweep_ms),
      "--peak_mib=" + std::to_string(flags.peak_mib),
      "--threads=" + std::to_string(flags.threads),
      "--idle_intervals=" + std::to_string(flags.idle_intervals),
      "--max_block_kib=" + std::to_string(flags.max_block_kib),
      "--max_object_mib=" + std::to_string(flags.max_object_mib),
      "--outlier_mib=" + std::to_string(flags.outlier_mib),
  };
  if (flags.collect_after_sweep) args.push_back("--collect_after_sweep");
  if (flags.workers_exit) args.push_back("--workers_exit");
  if (flags.free_others) args.push_back("--free_others");
  if (flags.owners_collect) args.push_back("--owners_collect");
  bool result = false;
  const bool exited_ok = syncpool::bench::RunSelf("burst", args, [&](std::string_view line) {
    if (line.substr(0, 7) == "SAMPLE ") {
      std::string row(line.substr(7));
      std::replace(row.begin(), row.end(), ' ', ',');
      series->rows.push_back(std::move(row));
      return;
    }
    result = result || line.substr(0, 7) == "RESULT ";
    std::printf("%.*s\n", static_cast<int>(line.size()), line.data());
  });
  std::fflush(stdout);
  if (!exited_ok || !result) std::fprintf(stderr, "burst: the %s child failed\n", resource.c_str());
  return exited_ok && result;
}

// The CSV of every sample (resource, milliseconds since going idle, resident MiB), which
// scripts/plot_memory.sh draws.
bool WriteSamples(const std::string& path, const std::vector<Series>& all) {
  std::vector<std::string> rows;
  for (const Series& s : all) {
    for (const std::string& row : s.rows) rows.push_back(s.resource + "," + row);
  }
  return syncpool::bench::WriteCsv("burst", path, "resource,ms_since_idle,rss_mib", rows);
}

int Parent(const Flags& flags) {
  std::vector<std::string> resources = flags.resources;
  if (resources.empty()) resources.assign(std::begin(kResources), std::end(kResources));
  std::printf(
      "burst: %d threads hold %d MiB at the peak, then go idle and are watched for %d "
      "ms (%d syncpool sweeps of %d ms); %u CPUs\n",
      flags.threads, flags.peak_mib, flags.sweep_ms * flags.idle_intervals, flags.idle_intervals,
      flags.sweep_ms, std::thread::hardware_concurrency());
  std::printf(
      "settle_ms: time after going idle until the resident set stays within baseline + "
      "5 %% of (peak - baseline); -1: never\n\n");
  std::vector<Series> all;
  bool ok = true;
  for (const std::string& r : resources) {
    Series series{r, {}};
    ok = RunChild(flags, r, &series) && ok;
    std::printf("\n");
    all.push_back(std::move(series));
  }
  if (!flags.csv.empty()) {
    const std::string csv = syncpool::bench::FromWorkingDirectory(flags.csv);
    if (WriteSamples(csv, all)) {
      std::printf("wrote %s (the chart: bash scripts/plot_memory.sh %s CHART.png %d %d)\n",
                  csv.c_str(), csv.c_str(), flags.sweep_ms, flags.idle_intervals);
    } else {
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace burst
}  // namespace bench
}  // namespace syncpool

int main(int argc, char** argv) {
  namespace burst = ::syncpool::bench::burst;
  burst::Flags flags;
  if (!burst::ParseFlags(argc, argv, &flags)) {
    burst::Usage();
    return 2;
  }
#ifndef NDEBUG
  if (flags.child.empty()) {
    std::printf(
        "warning: built without NDEBUG (syncpool's debug checks are on): build with "
        "-c opt\n\n");
  }
#endif
  return flags.child.empty() ? burst::Parent(flags) : burst::Child(flags);
}
