// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The members of Sweeper that are not its public surface (sweeper.h) but that tests and
// benchmarks drive step by step: how a cache joins and leaves it, and the park step of its
// thread. The library's caches reach the first through internal::SweepRegistry. Not installed.

#ifndef SYNCPOOL_SRC_SWEEPER_ACCESS_H_
#define SYNCPOOL_SRC_SWEEPER_ACCESS_H_

#include "syncpool/internal/sweepable.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace internal {

struct SweeperAccess {
  // Sweeper::Register() and Sweeper::Unregister() (sweeper.h), for a test's own Sweepable.
  static void Register(Sweeper& s, Sweepable* cache) { s.Register(cache); }
  static void Unregister(Sweeper& s, Sweepable* cache) { s.Unregister(cache); }
  // Sweeper::ParkIfIdle() and Sweeper::parked() (sweeper.h).
  static bool ParkIfIdle(Sweeper& s) { return s.ParkIfIdle(); }
  static bool parked(const Sweeper& s) { return s.parked(); }
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SWEEPER_ACCESS_H_
