// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The members of Sweeper that are not its public surface (sweeper.h): how a cache joins and
// leaves it, the park step of its thread, and an epoch with a pacer of the caller's. The
// library's caches reach them through internal::SweepRegistry; tests and benchmarks that
// drive a sweeper step by step reach them here. Not installed.

#ifndef SYNCPOOL_SRC_SWEEPER_ACCESS_H_
#define SYNCPOOL_SRC_SWEEPER_ACCESS_H_

#include "syncpool/internal/sweepable.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace internal {

struct SweeperAccess {
  // Sweeper::Register(), Sweeper::Unregister(), Sweeper::RestartAfterFork() (sweeper.h).
  static void Register(Sweeper& s, Sweepable* cache) { s.Register(cache); }
  static void Unregister(Sweeper& s, Sweepable* cache) { s.Unregister(cache); }
  static void RestartAfterFork(Sweeper& s) { s.RestartAfterFork(); }
  // Sweeper::ParkIfIdle() and Sweeper::parked() (sweeper.h).
  static bool ParkIfIdle(Sweeper& s) { return s.ParkIfIdle(); }
  static bool parked(const Sweeper& s) { return s.parked(); }
  // One epoch as SweepNow() runs it, with the caller's Epoch (its pacer, when set, instead of
  // one made from the sweeper's Options).
  static void Sweep(Sweeper& s, const Epoch& epoch) { s.Sweep(epoch); }
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SWEEPER_ACCESS_H_
