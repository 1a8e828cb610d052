// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "bench/burst_workload.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>

#include "bench/util/rss_sampler.h"

namespace syncpool {
namespace bench {
namespace burst {
namespace {

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

long long MsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

}  // namespace

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

std::function<void(int, Phases*)> ThroughResource(const Flags& flags,
                                                   std::pmr::memory_resource* mr,
                                                   std::function<void()> owner_hook) {
  return [&flags, mr, owner_hook = std::move(owner_hook)](int index, Phases* phases) {
    BurstThread(index, mr, flags, owner_hook, phases);
  };
}

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
  RssSampler sampler(&reader, kSamplePeriod);
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
  const std::vector<RssSample>& samples = sampler.Stop();
  report();
  phases.stage.store(Phases::kDone);
  phases.stage.notify_all();
  for (std::thread& t : threads) t.join();

  size_t peak = baseline;
  for (const RssSample& s : samples) peak = std::max(peak, s.rss);
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
  for (const RssSample& s : samples) {
    // Milliseconds since going idle (negative during the burst), resident MiB.
    const double t = std::chrono::duration<double, std::milli>(s.when - idle).count();
    std::printf("SAMPLE %.1f %.2f\n", t, Mib(s.rss));
  }
  std::printf("RESULT %s baseline_mib=%.1f peak_mib=%.1f final_mib=%.1f settle_ms=%lld\n",
              std::string(name).c_str(), Mib(baseline), Mib(peak), Mib(final_rss), settle_ms);
  std::fflush(stdout);
  return 0;
}

}  // namespace burst
}  // namespace bench
}  // namespace syncpool
