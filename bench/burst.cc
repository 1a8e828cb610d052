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
//   bazel run -c opt //bench:burst -- --plot=/tmp/burst.png   # also /tmp/burst.csv
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
// as larger than max_object_bytes. With --plot=FILE.png the parent also writes FILE.csv (resource, milliseconds
// since going idle, resident MiB: one row per sample) and draws it with gnuplot.
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
//   --plot=FILE.png       write FILE.csv and the chart
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

#include <fcntl.h>
#include <malloc.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <latch>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/flags.h"
#include "syncpool/mimalloc_resource.h"
#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace {

using ::syncpool::bench::ParseInt;


using Clock = std::chrono::steady_clock;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kMinBuffer = 16;
constexpr size_t kMaxBuffer = kMiB;
// Buffers are bytes: 8-aligned is enough. (With alignof(std::max_align_t), 16, libstdc++'s pool
// resources hand out 8-aligned blocks for sizes that are not multiples of 16, which the
// sanitizer builds report as undefined behaviour.)
constexpr size_t kBufferAlignment = 8;
constexpr auto kSamplePeriod = std::chrono::milliseconds(10);
// The resident set has settled once it stays within baseline + kSettleBand * (peak - baseline).
constexpr double kSettleBand = 0.05;

// Every resource, in the order they run.
constexpr std::string_view kResources[] = {"syncpool",   "synchronized_pool", "unsynchronized_pool",
                                           "new_delete", "mimalloc",          "string_pool",
                                           "string_new"};
// The string children's sizes.
constexpr size_t kMinString = 1024;
constexpr size_t kMaxString = 16 * kMiB;

// -----------------------------------------------------------------------------
// Command line
// -----------------------------------------------------------------------------

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
  std::string plot;                    // --plot=FILE.png
  std::vector<std::string> resources;  // --resources=a,b,...: a subset, in this order.
  std::string child;                   // --child=NAME: run one resource (the parent's children).
};

void Usage() {
  std::fprintf(
      stderr,
      "usage: burst [--plot=FILE.png] [--sweep_ms=100] [--peak_mib=512] [--threads=4]\n"
      "             [--idle_intervals=5] [--max_block_kib=1024] [--resources=a,b,...]\n"
      "             [--max_object_mib=64] [--outlier_mib=256]\n"
      "             [--collect_after_sweep] [--workers_exit] [--free_others] [--owners_collect]\n"
      "resources: syncpool synchronized_pool unsynchronized_pool new_delete mimalloc string_pool\n"
      "           string_new\n");
}

std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    if (comma != 0) parts.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return parts;
}

bool IsResource(std::string_view name) {
  return std::find(std::begin(kResources), std::end(kResources), name) != std::end(kResources);
}

// Accepts --name=value and --name value. Returns false (after a message) on any error.
bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--collect_after_sweep") {
      flags->collect_after_sweep = true;
      continue;
    }
    if (arg == "--workers_exit") {
      flags->workers_exit = true;
      continue;
    }
    if (arg == "--free_others") {
      flags->free_others = true;
      continue;
    }
    if (arg == "--owners_collect") {
      flags->owners_collect = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") return false;
    std::string_view name;
    std::string_view value;
    if (!::syncpool::bench::SplitFlag("burst", argc, argv, &i, &name, &value)) return false;
    bool ok = true;
    if (name == "sweep_ms") {
      ok = ParseInt(value, 1, 60'000, &flags->sweep_ms);
    } else if (name == "peak_mib") {
      ok = ParseInt(value, 1, 1 << 20, &flags->peak_mib);
    } else if (name == "threads") {
      ok = ParseInt(value, 1, 256, &flags->threads);
    } else if (name == "idle_intervals") {
      ok = ParseInt(value, 1, 1000, &flags->idle_intervals);
    } else if (name == "max_block_kib") {
      ok = ParseInt(value, 1, 1024, &flags->max_block_kib);
    } else if (name == "max_object_mib") {
      ok = ParseInt(value, 0, 1 << 20, &flags->max_object_mib);
    } else if (name == "outlier_mib") {
      ok = ParseInt(value, 0, 1 << 16, &flags->outlier_mib);
    } else if (name == "plot") {
      flags->plot = std::string(value);
      ok = !value.empty();
    } else if (name == "resources") {
      flags->resources = SplitCommas(value);
      ok = !flags->resources.empty() &&
           std::all_of(flags->resources.begin(), flags->resources.end(), IsResource);
    } else if (name == "child") {
      flags->child = std::string(value);
      ok = IsResource(value);
    } else {
      std::fprintf(stderr, "burst: unknown flag --%s\n", std::string(name).c_str());
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "burst: invalid value \"%s\" for --%s\n", std::string(value).c_str(),
                   std::string(name).c_str());
      return false;
    }
  }
  return true;
}

// -----------------------------------------------------------------------------
// Resident set sampling (in the child)
// -----------------------------------------------------------------------------

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

struct Sample {
  Clock::time_point when;
  size_t rss;
};

// Samples the resident set every kSamplePeriod on its own thread, from Start() to Stop(), into
// storage reserved up front (so that sampling itself does not allocate).
class Sampler {
 public:
  explicit Sampler(const RssReader* reader) : reader_(reader) { samples_.reserve(kCapacity); }

  void Start() {
    thread_ = std::thread([this] {
      Clock::time_point next = Clock::now();
      while (!stop_.load(std::memory_order_acquire)) {
        if (samples_.size() < kCapacity) samples_.push_back({Clock::now(), reader_->Read()});
        next += kSamplePeriod;
        std::this_thread::sleep_until(next);
      }
      if (samples_.size() < kCapacity) samples_.push_back({Clock::now(), reader_->Read()});
    });
  }

  // Stops the thread after one last sample; the samples can be read afterwards.
  const std::vector<Sample>& Stop() {
    stop_.store(true, std::memory_order_release);
    thread_.join();
    return samples_;
  }

 private:
  static constexpr size_t kCapacity = size_t{1} << 17;  // About 20 minutes.

  const RssReader* const reader_;
  std::vector<Sample> samples_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// -----------------------------------------------------------------------------
// The burst (in the child)
// -----------------------------------------------------------------------------

// A small deterministic generator (splitmix64): each thread draws the same sizes in every run
// and for every resource.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Log-uniform between kMinBuffer and kMaxBuffer: as many buffers of 16-32 B as of 512 KiB-1 MiB,
// while the bytes are dominated by the large ones.
size_t BufferSize(Random& rng);

// Log-uniform between `lo` and `hi`.
size_t LogUniform(Random& rng, size_t lo, size_t hi) {
  const double a = std::log2(static_cast<double>(lo));
  const double b = std::log2(static_cast<double>(hi));
  return std::clamp(static_cast<size_t>(std::exp2(a + (b - a) * rng.Uniform())), lo, hi);
}

size_t BufferSize(Random& rng) { return LogUniform(rng, kMinBuffer, kMaxBuffer); }

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

// The end of a burst thread: once its buffers are freed, it is idle; it blocks until the run
// is over (with --workers_exit, ends at once), running `owner_hook` when the main thread asks
// (--owners_collect).
void IdleUntilDone(const Flags& flags, const std::function<void()>& owner_hook,
                   Phases* phases) {
  phases->idle.count_down();
  if (flags.workers_exit) return;
  // Blocked in the kernel: idle, but alive.
  phases->stage.wait(Phases::kIdle);
  if (phases->stage.load() == Phases::kCollect) {
    owner_hook();
    phases->collected.count_down();
    phases->stage.wait(Phases::kCollect);
  }
}

// Thread `index` of the burst: churns until it holds its share of --peak_mib, waits for the
// others, frees its buffers (with --free_others, those of the next thread), and then blocks
// until the run is over (with --workers_exit, ends at once). `owner_hook` runs on this thread
// when the main thread asks for it (--owners_collect).
void BurstThread(int index, std::pmr::memory_resource* mr, const Flags& flags,
                 const std::function<void()>& owner_hook, Phases* phases) {
  const size_t target = static_cast<size_t>(flags.peak_mib) * kMiB / flags.threads;
  Random rng(0x5eed0000u + static_cast<uint64_t>(index));
  std::vector<Buffer>& live = phases->live[static_cast<size_t>(index)];
  live.reserve(target / 4096 + 1024);  // Before the baseline: the burst does not grow it much.
  phases->start.wait();
  size_t live_bytes = 0;
  while (live_bytes < target) {
    const size_t bytes = BufferSize(rng);
    void* p = mr->allocate(bytes, kBufferAlignment);
    std::memset(p, static_cast<int>(bytes & 0xff) | 1, bytes);  // Every page becomes resident.
    live.push_back({p, bytes});
    live_bytes += bytes;
    if ((rng.Next() & 1) != 0) {  // A temporary buffer: free one at random.
      const size_t victim = static_cast<size_t>(rng.Next() % live.size());
      mr->deallocate(live[victim].p, live[victim].bytes, kBufferAlignment);
      live_bytes -= live[victim].bytes;
      live[victim] = live.back();
      live.pop_back();
    }
  }
  phases->peak.arrive_and_wait();
  const int owner = flags.free_others ? (index + 1) % flags.threads : index;
  for (const Buffer& b : phases->live[static_cast<size_t>(owner)]) {
    mr->deallocate(b.p, b.bytes, kBufferAlignment);
  }
  IdleUntilDone(flags, owner_hook, phases);
}

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

// BurstThread() for the string children: strings of kMinString to kMaxString bytes, each
// written whole; the bytes held are their capacities.
void StringBurstThread(int index, StringSource* source, const Flags& flags, Phases* phases) {
  const size_t target = static_cast<size_t>(flags.peak_mib) * kMiB / flags.threads;
  Random rng(0x5eed0000u + static_cast<uint64_t>(index));
  std::vector<std::unique_ptr<std::string>> live;
  live.reserve(target / kMinString + 1024);
  phases->start.wait();
  auto fill = [](std::string& s, size_t bytes) {
    s.assign(bytes, static_cast<char>((bytes & 0x7f) | 1));  // Every page becomes resident.
  };
  if (index == 0 && flags.outlier_mib > 0) {
    std::unique_ptr<std::string> outlier = source->Take();
    fill(*outlier, static_cast<size_t>(flags.outlier_mib) * kMiB);
    source->Drop(std::move(outlier));
    source->outlier_back.store(true, std::memory_order_relaxed);
  }
  size_t live_bytes = 0;
  while (live_bytes < target) {
    std::unique_ptr<std::string> s = source->Take();
    fill(*s, LogUniform(rng, kMinString, kMaxString));
    live_bytes += s->capacity();
    live.push_back(std::move(s));
    if ((rng.Next() & 1) != 0) {  // A temporary buffer: drop one at random.
      const size_t victim = static_cast<size_t>(rng.Next() % live.size());
      live_bytes -= live[victim]->capacity();
      source->Drop(std::move(live[victim]));
      live[victim] = std::move(live.back());
      live.pop_back();
    }
  }
  phases->peak.arrive_and_wait();
  for (std::unique_ptr<std::string>& s : live) source->Drop(std::move(s));
  live.clear();
  IdleUntilDone(flags, [] {}, phases);
}

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

double Mib(size_t bytes) { return static_cast<double>(bytes) / static_cast<double>(kMiB); }

long long MsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

// The threads of a burst through `mr`.
std::function<void(int, Phases*)> ThroughResource(const Flags& flags,
                                                   std::pmr::memory_resource* mr,
                                                   std::function<void()> owner_hook) {
  return [&flags, mr, owner_hook = std::move(owner_hook)](int index, Phases* phases) {
    BurstThread(index, mr, flags, owner_hook, phases);
  };
}

// Runs the burst (`thread_body` on each thread) and prints the samples and the RESULT line. `report` runs on
// the main thread at the end, while the threads are still blocked (syncpool prints its
// statistics there).
//
// --owners_collect (an experiment, for docs/memory.md): once the watch after going idle is
// over, every blocked thread runs `owner_hook` on itself, and the watch goes on for as long
// again. It shows what happens when the threads that allocated the memory call into the
// allocator again. settle_ms is computed over the whole watch, so it includes that.
int RunBurst(const Flags& flags, std::string_view name,
             const std::function<void(int, Phases*)>& thread_body,
             const std::function<void()>& report) {
  RssReader reader;
  if (!reader.ok()) {
    std::printf("%s: cannot read /proc/self/statm\n", std::string(name).c_str());
    return 1;
  }
  Phases phases(flags.threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < flags.threads; ++t) {
    threads.emplace_back(thread_body, t, &phases);
  }
  Sampler sampler(&reader);
  const size_t baseline = reader.Read();
  const Clock::time_point start = Clock::now();
  sampler.Start();
  phases.start.count_down();
  phases.peak.wait();
  const Clock::time_point peak_reached = Clock::now();
  phases.idle.wait();
  const Clock::time_point idle = Clock::now();
  const auto watch =
      std::chrono::milliseconds(static_cast<long long>(flags.sweep_ms) * flags.idle_intervals);
  std::this_thread::sleep_until(idle + watch);
  const bool owners_collect = flags.owners_collect && !flags.workers_exit;
  if (owners_collect) {
    phases.stage.store(Phases::kCollect);
    phases.stage.notify_all();
    phases.collected.wait();
    std::this_thread::sleep_until(idle + 2 * watch);
  }
  const std::vector<Sample>& samples = sampler.Stop();
  report();
  phases.stage.store(Phases::kDone);
  phases.stage.notify_all();
  for (std::thread& t : threads) t.join();

  size_t peak = baseline;
  for (const Sample& s : samples) peak = std::max(peak, s.rss);
  const size_t final_rss = samples.empty() ? baseline : samples.back().rss;
  const double band =
      static_cast<double>(baseline) + kSettleBand * static_cast<double>(peak - baseline);
  // The first sample after going idle from which every later one is within the band.
  long long settle_ms = -1;
  for (size_t i = samples.size(); i-- > 0 && samples[i].when >= idle;) {
    if (static_cast<double>(samples[i].rss) > band) break;
    settle_ms = MsBetween(idle, samples[i].when);
  }

  std::printf("%s: burst of %lld ms (peak held after %lld ms), then watched for %lld ms idle%s\n",
              std::string(name).c_str(), MsBetween(start, idle), MsBetween(start, peak_reached),
              static_cast<long long>(watch.count() * (owners_collect ? 2 : 1)),
              owners_collect ? " (the threads ran the owner hook half way)" : "");
  for (const Sample& s : samples) {
    // Milliseconds since going idle (negative during the burst), resident MiB.
    const double t = std::chrono::duration<double, std::milli>(s.when - idle).count();
    std::printf("SAMPLE %.1f %.2f\n", t, Mib(s.rss));
  }
  std::printf("RESULT %s baseline_mib=%.1f peak_mib=%.1f final_mib=%.1f settle_ms=%lld\n",
              std::string(name).c_str(), Mib(baseline), Mib(peak), Mib(final_rss), settle_ms);
  std::fflush(stdout);
  return 0;
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
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("burst: pipe");
    return false;
  }
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("burst: fork");
    return false;
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy.
    execv("/proc/self/exe", argv.data());
    std::perror("burst: exec /proc/self/exe");
    _exit(127);
  }
  close(fds[1]);
  FILE* out = fdopen(fds[0], "r");
  bool result = false;
  char* line = nullptr;
  size_t capacity = 0;
  ssize_t n;
  while ((n = getline(&line, &capacity, out)) > 0) {
    std::string_view text(line, static_cast<size_t>(n));
    if (text.substr(0, 7) == "SAMPLE ") {
      std::string row(text.substr(7));
      while (!row.empty() && row.back() == '\n') row.pop_back();
      std::replace(row.begin(), row.end(), ' ', ',');
      series->rows.push_back(std::move(row));
      continue;
    }
    result = result || text.substr(0, 7) == "RESULT ";
    std::fwrite(line, 1, static_cast<size_t>(n), stdout);
  }
  std::free(line);
  std::fclose(out);
  int status = 0;
  waitpid(pid, &status, 0);
  std::fflush(stdout);
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok || !result) std::fprintf(stderr, "burst: the %s child failed\n", resource.c_str());
  return ok && result;
}

// Under `bazel run` the working directory is the runfiles tree: relative paths are taken from
// where bazel was run.
std::string FromWorkingDirectory(const std::string& path) {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || dir == nullptr) return path;
  return std::string(dir) + "/" + path;
}

std::string CsvPathFor(const std::string& png) {
  const std::string ext = ".png";
  if (png.size() > ext.size() && png.compare(png.size() - ext.size(), ext.size(), ext) == 0) {
    return png.substr(0, png.size() - ext.size()) + ".csv";
  }
  return png + ".csv";
}

bool WriteCsv(const std::string& path, const std::vector<Series>& all) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::perror(("burst: " + path).c_str());
    return false;
  }
  std::fprintf(f, "resource,ms_since_idle,rss_mib\n");
  for (const Series& s : all) {
    for (const std::string& row : s.rows) {
      std::fprintf(f, "%s,%s\n", s.resource.c_str(), row.c_str());
    }
  }
  return std::fclose(f) == 0;
}

// pngcairo where gnuplot has it, else the libgd png terminal.
std::string PngTerminal(const char* gnuplot) {
  const std::string probe = std::string(gnuplot) + " -e 'set terminal pngcairo' >/dev/null 2>&1";
  return std::system(probe.c_str()) == 0 ? "pngcairo" : "png";
}

bool Plot(const Flags& flags, const std::string& png, const std::string& csv,
          const std::vector<Series>& all) {
  constexpr const char* kGnuplot = "/usr/bin/gnuplot";
  if (access(kGnuplot, X_OK) != 0) {
    std::fprintf(stderr, "burst: %s not found; wrote %s only\n", kGnuplot, csv.c_str());
    return false;
  }
  if (png.find('\'') != std::string::npos || csv.find('\'') != std::string::npos) {
    std::fprintf(stderr, "burst: --plot path must not contain a quote\n");
    return false;
  }
  std::string names;
  for (const Series& s : all) names += (names.empty() ? "" : " ") + s.resource;
  FILE* gp = popen(kGnuplot, "w");
  if (gp == nullptr) {
    std::perror("burst: gnuplot");
    return false;
  }
  std::fprintf(gp, "set terminal %s noenhanced size 1100,650\n", PngTerminal(kGnuplot).c_str());
  std::fprintf(gp, "set output '%s'\n", png.c_str());
  std::fprintf(gp, "set datafile separator ','\n");
  std::fprintf(gp,
               "set title 'Resident set: %d threads, %d MiB burst of 16 B - 1 MiB buffers, "
               "then idle (syncpool sweep every %d ms)'\n",
               flags.threads, flags.peak_mib, flags.sweep_ms);
  std::fprintf(gp, "set xlabel 'ms since all threads went idle'\n");
  std::fprintf(gp, "set ylabel 'resident set (MiB)'\n");
  std::fprintf(gp, "set grid\nset key outside right top\nset yrange [0:*]\n");
  for (int k = 0; k <= flags.idle_intervals; ++k) {
    std::fprintf(gp, "set arrow from %d, graph 0 to %d, graph 1 nohead dt 3 lc rgb '%s'\n",
                 k * flags.sweep_ms, k * flags.sweep_ms, k == 0 ? "black" : "gray50");
  }
  std::fprintf(gp,
               "plot for [r in '%s'] '%s' using 2:(strcol(1) eq r ? $3 : NaN) "
               "with lines lw 2 title r\n",
               names.c_str(), csv.c_str());
  const int status = pclose(gp);
  if (status != 0) {
    std::fprintf(stderr, "burst: gnuplot failed\n");
    return false;
  }
  return true;
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
  if (!flags.plot.empty()) {
    const std::string png = FromWorkingDirectory(flags.plot);
    const std::string csv = CsvPathFor(png);
    ok = WriteCsv(csv, all) && ok;
    ok = Plot(flags, png, csv, all) && ok;
    std::printf("wrote %s and %s\n", png.c_str(), csv.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    Usage();
    return 2;
  }
#ifndef NDEBUG
  if (flags.child.empty()) {
    std::printf(
        "warning: built without NDEBUG (syncpool's debug checks are on): build with "
        "-c opt\n\n");
  }
#endif
  return flags.child.empty() ? Parent(flags) : Child(flags);
}
