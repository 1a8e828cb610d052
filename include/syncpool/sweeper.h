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
//   2. turns the primary generation into the victim generation.
//
// A Get or allocate that finds the primary generation empty takes from the victim before going
// upstream, so a block that nobody uses survives at least one and at most two epochs (Go 1.13's
// victim cache), while a block in steady use is always found again.
//
// Thread safety: all members are thread-safe. Sweeps are serialized: SweepNow() waits for a
// sweep in progress on another thread. A sweep never holds a per-CPU cache's lock while it
// calls upstream or destroys objects, so threads using the pools are not stopped.
//
// Lifetime: the background thread starts when the first cache registers (never for a sweeper
// created with `background = false`) and is joined by the destructor, or by Stop(). The default
// sweeper is never destroyed; its thread is stopped and joined at exit, after which SweepNow()
// still works and caches are still released when they are destroyed.
//
// REQUIRES: a sweeper outlives every cache registered with it; a destructor of a pooled object
// must not call SweepNow() (the sweep that destroys it would wait for itself).

#ifndef SYNCPOOL_SWEEPER_H_
#define SYNCPOOL_SWEEPER_H_

#include <chrono>
#include <cstdint>
#include <memory>

namespace syncpool {

// Sweepable
//
// What a sweeper drives: one epoch of one cache. Implemented by the library's caches; users
// need not implement it.
class Sweepable {
 public:
  // Sweepable::SweepEpoch()
  //
  // Runs one epoch. Called by at most one thread at a time for a given sweeper.
  virtual void SweepEpoch() = 0;

 protected:
  ~Sweepable() = default;
};

class Sweeper {
 public:
  struct Options {
    // Time between two epochs of the background thread. The default sweeper reads it from
    // SYNCPOOL_SWEEP_INTERVAL_MS (a positive integer) when set; 1000 ms otherwise.
    std::chrono::milliseconds interval{1000};
    // When false, no thread is ever started: epochs run only through SweepNow().
    bool background = true;
  };

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
  // done. Tests use it instead of waiting for the background thread.
  void SweepNow();

  // Sweeper::Register()
  //
  // Adds a cache to the epochs and starts the background thread if it is not running.
  // Called by the library's caches on first use. Throws std::system_error when the thread
  // cannot be started; the cache stays registered and a later Register() tries again.
  void Register(Sweepable* cache);

  // Sweeper::Unregister()
  //
  // Removes a cache; when a sweep is visiting it on another thread, waits until that visit
  // ends. After it returns the sweeper never touches `cache` again.
  void Unregister(Sweepable* cache);

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

  // Sweeper::thread_running()
  //
  // Whether the background thread is running now.
  bool thread_running() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace syncpool

#endif  // SYNCPOOL_SWEEPER_H_
