// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/sweepable.h
// -----------------------------------------------------------------------------
//
// What a Sweeper drives: the interface its caches implement (one epoch, the fork locks, a
// park) and the fork generation they watch. Not part of syncpool's API: the library's caches
// implement it (internal/block_cache.h); sweeper.h says what a sweeper does with it.

#ifndef SYNCPOOL_INTERNAL_SWEEPABLE_H_
#define SYNCPOOL_INTERNAL_SWEEPABLE_H_

#include <atomic>
#include <cstdint>

namespace syncpool {

namespace internal {
// How many times this process is a fork() child of a process that had sweepers (0 in the
// first process): caches compare it with what they saw last to restart their sweeper.
extern std::atomic<uint64_t> g_fork_generation;
}  // namespace internal

// Epoch
//
// What one epoch asks of the caches it visits.
struct Epoch {
  // The system is short of memory: release everything cached.
  bool pressure = false;
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
  // Called around fork() (pthread_atfork), with the sweeper's own locks held: take, then
  // release, every lock the cache's operations may hold, so that the child does not inherit a
  // lock held by a thread that does not exist there.
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

}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_SWEEPABLE_H_
