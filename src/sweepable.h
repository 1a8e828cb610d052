// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/sweepable.h
// -----------------------------------------------------------------------------
//
// The contract between a sweeper and its caches, in both directions: Sweepable, what a cache
// implements for the sweeper (one epoch, the fork locks, a park); SweepRegistry, what a cache
// asks of the sweeper it joins (register, leave, restart after fork, wake). Not part of
// syncpool's API. The caches (internal/block_cache.h)
// see a sweeper only through this header, so the cache layer does not depend on the sweeper
// layer (sweeper.h, which implements SweepRegistry); the public faces join the two.

#ifndef SYNCPOOL_SRC_SWEEPABLE_H_
#define SYNCPOOL_SRC_SWEEPABLE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace syncpool {

namespace internal {

// SweepPacer
//
// Cuts a sweep into slices for the threads that share its CPU. Releasing what a sweep found
// (upstream deallocations, object destructors) takes milliseconds when caches hold hundreds
// of thousands of blocks; run at once, that is a stall of milliseconds for a thread the
// sweeping thread displaces from its CPU. So the sweep calls Pause() between pieces of its
// work, at points where it holds no cache's lock and every cache it closed to sequences is
// open again; once `slice` has passed since the last pause, Pause() lets the CPU go (sleeps
// for `pause`, or yields it when `pause` is zero) and starts the next slice. A thread beside a
// sweep then waits about one slice at a time. A zero `slice` never pauses.
//
// The slices are measured by `clock` (the sweeper's Options::clock, which tests inject) or,
// when it is empty, by std::chrono::steady_clock; a pause itself always takes real time.
//
// Thread safety: used by the one thread that runs the sweep.
class SweepPacer {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // `clock` must outlive the pacer.
  SweepPacer(std::chrono::nanoseconds slice, std::chrono::nanoseconds pause, const Clock& clock);
  SweepPacer(const SweepPacer&) = delete;
  SweepPacer& operator=(const SweepPacer&) = delete;

  // SweepPacer::Pause()
  //
  // Lets the CPU go when the current slice is used up. REQUIRES: the caller holds no lock a
  // cache operation may wait for, and has reopened every cache it closed.
  void Pause();

  // SweepPacer::pauses()
  //
  // How many times Pause() let the CPU go.
  uint64_t pauses() const { return pauses_; }

 private:
  std::chrono::steady_clock::time_point Now() const {
    return clock_ ? clock_() : std::chrono::steady_clock::now();
  }

  const std::chrono::nanoseconds slice_;
  const std::chrono::nanoseconds pause_;
  const Clock& clock_;
  std::chrono::steady_clock::time_point slice_start_;
  uint64_t pauses_ = 0;
};

// Epoch
//
// What one epoch asks of the caches it visits.
struct Epoch {
  // The system is short of memory: release everything cached.
  bool pressure = false;
  // Where the epoch pauses between slices of its work (nullptr: it runs without pausing).
  // Sweeper::SweepNow() supplies one made from its Options::slice and Options::pause.
  SweepPacer* pacer = nullptr;
};

// Sweepable
//
// What a sweeper drives: one epoch of one cache.
class Sweepable {
 public:
  // Sweepable::SweepEpoch()
  //
  // Runs one epoch. Called by at most one thread at a time for a given sweeper.
  virtual void SweepEpoch(const Epoch& epoch) = 0;

  // Sweepable::LockForFork(), Sweepable::UnlockAfterFork()
  //
  // Called by the fork handlers with the sweeper's `mu` held (fork.h, rank kSweepers): take,
  // then release, every lock the cache's operations may hold.
  virtual void LockForFork() {}
  virtual void UnlockAfterFork() {}

  // Sweepable::Park()
  //
  // For a sweeper about to park (Sweeper::ParkIfIdle()): if the cache holds nothing, arrange
  // that its next operation on any thread takes a slow path, which calls the sweeper's
  // WakeIfParked(), and return true; otherwise return false. Called between epochs, by at most
  // one thread at a time for a given sweeper. The default never parks.
  virtual bool Park() { return false; }

 protected:
  ~Sweepable() = default;
};

// SweepRegistry
//
// What a cache asks of the sweeper it joins; Sweeper implements it (sweeper.h says what each
// does). Every member is thread-safe.
class SweepRegistry {
 public:
  // SweepRegistry::Register(), SweepRegistry::Unregister()
  //
  // Adds a cache to the epochs (on its first use; may throw std::system_error when the
  // background thread cannot start), and removes it (after Unregister() returns, the sweeper
  // never touches it again).
  virtual void Register(Sweepable* cache) = 0;
  virtual void Unregister(Sweepable* cache) = 0;

  // SweepRegistry::RestartAfterFork()
  //
  // In a fork child, once: starts the background thread again where the parent had one.
  virtual void RestartAfterFork() = 0;

  // SweepRegistry::WakeIfParked()
  //
  // Called by the caches' slow paths: ends a park (Sweepable::Park()). One load when not
  // parked.
  void WakeIfParked() {
    if (parked_.load(std::memory_order_seq_cst)) Wake();
  }

 protected:
  ~SweepRegistry() = default;

  // Ends a park: clears parked_ and wakes the thread.
  virtual void Wake() = 0;

  // Set by the sweeper before it parks its caches and cleared by Wake() (the protocol is in
  // sweeper.cc): a slow path that begins after a cache was parked reads it set.
  std::atomic<bool> parked_{false};
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SWEEPABLE_H_
