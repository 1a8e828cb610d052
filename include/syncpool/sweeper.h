// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/sweeper.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::Sweeper`, the periodic epoch sweeper that stands in for Go's
// garbage collector. Every Pool<T> and PoolResource registers with one sweeper (by default the
// process-wide `Sweeper::Default()`) when it is first used. Each epoch the sweeper visits every
// registered cache and, per CPU and size class:
//
//   1. releases what sat in the victim generation (blocks go back upstream, objects are
//      destroyed),
//   2. turns the primary generation into the victim generation: all of it (Go's policy,
//      Retention::kVictim), or only the blocks that nobody took during the epoch
//      (Retention::kWorkingSet, the default: a steady workload keeps its blocks where its
//      fast path finds them);
//   3. releases the whole cache of a CPU that nobody used during the epoch (no Get, Put or
//      spill);
//   4. keeps caches within their byte budgets (Options::max_cached_bytes,
//      SetProcessCacheLimit()).
//
// A Get or allocate that finds the primary generation empty takes from the victim before going
// upstream, so a block that nobody uses survives at least one and at most two epochs (Go 1.13's
// victim cache), while a block in steady use is always found again.
//
// Memory pressure: the background thread also asks a PressureSource (by default the system's:
// /proc/pressure/memory, else /proc/meminfo) a few times per interval. When the system is short
// of memory it sweeps sooner (every interval / 4 at most) and each of those epochs releases
// everything cached, both generations (counted as Stats::pressure_blocks).
//
// Schedule: while anything is cached the background thread wakes four times per interval: one
// wake-up in four runs the epoch, the others only read the PressureSource (so that pressure is
// answered within a quarter interval). After an epoch that leaves nothing cached in any of its
// caches, the thread parks: it closes the caches so that their next operation takes a slow
// path, and the thread waits without a timeout, so that an idle process pays nothing
// for it (no wake-up at all). The next slow path of any of its caches (a miss: use after
// idleness begins with misses, the caches being empty; or the first Put into a closed cache)
// or a newly registered cache wakes it, and the first epoch follows within a quarter interval.
//
// Thread safety: all members are thread-safe. Sweeps are serialized: SweepNow() waits for a
// sweep in progress on another thread. A sweep never holds a per-CPU cache's lock while it
// calls upstream or destroys objects, so threads using the pools are not stopped; and it works
// in slices (Options::slice, Options::pause), letting the CPU go between them, so that a
// thread whose CPU the sweeping thread took waits about one slice, not the whole sweep.
//
// Lifetime: the background thread starts when the first cache registers (never for a sweeper
// created with `background = false`) and is joined by the destructor, or by Stop(). The default
// sweeper is never destroyed; its thread is stopped and joined at exit, after which SweepNow()
// still works and caches are still released when they are destroyed.
//
// fork(): sweepers and their caches take all their locks before a fork and release them after,
// in the parent and in the child (pthread_atfork), so the child finds none held by a thread
// it does not have; the child's pools work as the parent's did. The background thread does
// not survive into the child: it starts again there the next time a cache of the sweeper takes
// a slow path (a miss, a full cache) or registers, and SweepNow() and Tick() work at once.
// A sweep in progress when fork() is called finishes first (fork waits for it).
//
// REQUIRES: a sweeper outlives every cache registered with it; a destructor of a pooled object
// must not call SweepNow() or Tick() of any sweeper (on its own sweeper the sweep would wait for
// itself; on another, a fork() at that moment could deadlock, since the fork handlers take the
// sweepers' locks in one fixed order) nor fork().

#ifndef SYNCPOOL_SWEEPER_H_
#define SYNCPOOL_SWEEPER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "syncpool/options.h"  // SetProcessCacheLimit(), which the epochs enforce.

namespace syncpool {

// PressureSource
//
// Whether the system is short of memory, asked by sweepers between epochs. Tests inject their
// own; SystemMemoryPressure() is the default.
class PressureSource {
 public:
  virtual ~PressureSource() = default;
  // PressureSource::UnderPressure()
  //
  // Called from the sweeper's thread (or Sweeper::Tick()'s caller); must be thread-safe.
  virtual bool UnderPressure() = 0;
};

// SystemMemoryPressure()
//
// The system's pressure, never destroyed: true when /proc/pressure/memory reports that some
// task stalled on memory for at least SYNCPOOL_PRESSURE_STALL_PCT percent of the
// last 10 seconds ("some avg10"), or, where that file does not exist, when MemAvailable in
// /proc/meminfo is below SYNCPOOL_PRESSURE_AVAILABLE_PCT percent of MemTotal.
// False when neither can be read.
PressureSource& SystemMemoryPressure();

namespace internal {
struct SweeperState;  // src/sweeper.cc.
struct SweeperAccess;  // src/sweeper_access.h: the library's and its tests' way in.
}  // namespace internal

// Sweeper
//
// Its members are what a program calls: construction, Default(), SweepNow(), Tick() (the
// background thread's step, for tests), Stop(), and counters. How caches join it and how it
// parks is the library's business (src/sweeper.cc).
class Sweeper final {
 public:
  struct Options {
    // Asked between epochs; nullptr means SystemMemoryPressure(). Must outlive the sweeper.
    PressureSource* pressure = nullptr;
    // The time Tick() and the sweeps' slices go by; empty means std::chrono::steady_clock::now.
    // Tests inject one.
    std::function<std::chrono::steady_clock::time_point()> clock{};
    // Time between two epochs of the background thread. The default sweeper's comes from
    // SYNCPOOL_SWEEP_INTERVAL_MS when set (the same default: tests/sweeper_test.cc checks).
    std::chrono::milliseconds interval{1000};
    // When false, no thread is ever started: epochs run only through SweepNow() and Tick().
    bool background = true;
    // A sweep works in slices of `slice` and lets the CPU go for `pause` between them (yields
    // it when `pause` is zero), with no cache lock held and every cache it closed open again,
    // so that a thread sharing the sweeping thread's CPU waits about one slice, not the whole
    // sweep (internal::SweepPacer). Zero: each sweep runs without pausing.
    std::chrono::microseconds slice{100};
    std::chrono::microseconds pause{50};

    // Sweeper::Options::Manual(), Sweeper::Options::Every()
    //
    // No background thread (epochs only through SweepNow() and Tick()), or a thread every
    // `interval`.
    static Options Manual() {
      Options options;
      options.background = false;
      return options;
    }
    static Options Manual(std::chrono::milliseconds interval) {
      Options options = Manual();
      options.interval = interval;
      return options;
    }
    static Options Every(std::chrono::milliseconds interval) {
      Options options;
      options.interval = interval;
      return options;
    }
  };

  // Throws std::invalid_argument, naming the field, for an interval outside 1 ms to 24 h or a
  // negative slice or pause.
  Sweeper() : Sweeper(Options{}) {}
  explicit Sweeper(Options options);
  Sweeper(const Sweeper&) = delete;
  Sweeper& operator=(const Sweeper&) = delete;

  // Sweeper::~Sweeper()
  //
  // Stops and joins the background thread. REQUIRES: no cache is registered any more.
  ~Sweeper();

  // Sweeper::Default()
  //
  // The process-wide sweeper every pool and resource uses unless its Options name another.
  static Sweeper& Default();

  // Sweeper::SweepNow()
  //
  // Runs one epoch over every registered cache on the calling thread and returns when it is
  // done; with `pressure`, a pressure epoch, which releases everything cached (both
  // generations). Tests use it instead of waiting for the background thread.
  void SweepNow(bool pressure = false);

  // Sweeper::Tick()
  //
  // The background thread's step, callable directly: reads the clock and the pressure source,
  // and runs an epoch when `interval` has passed since the last one, or, under pressure, when a
  // quarter of it has (a pressure epoch). Returns whether it ran one. The first Tick() only
  // starts the clock.
  bool Tick();

  // Sweeper::Stop()
  //
  // Stops and joins the background thread; it is not started again. SweepNow() keeps working.
  void Stop();

  // Sweeper::interval()
  std::chrono::milliseconds interval() const;

  // Sweeper::epochs()
  //
  // The number of epochs run so far (by the thread and by SweepNow()).
  uint64_t epochs() const;

  // Sweeper::pauses()
  //
  // How many times the sweeps so far let the CPU go between two slices (Options::slice).
  uint64_t pauses() const;

  // Sweeper::thread_running()
  //
  // Whether the background thread is running now.
  bool thread_running() const;

 private:
  friend struct internal::SweeperState;
  friend struct internal::SweeperAccess;

  // The registry the caches join, the thread's state and the park (src/sweeper.cc).
  const std::unique_ptr<internal::SweeperState> state_;
};

}  // namespace syncpool

#endif  // SYNCPOOL_SWEEPER_H_
