// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// What of a Sweeper is not its public surface (sweeper.h) but the library's caches use, and
// tests and benchmarks drive step by step: the registry a cache joins and leaves, and the park
// step of its thread. Not installed.

#ifndef SYNCPOOL_SRC_SWEEPER_ACCESS_H_
#define SYNCPOOL_SRC_SWEEPER_ACCESS_H_

#include "src/sweepable.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace internal {

struct SweeperAccess {
  // The registry a cache of `s` joins (src/sweeper.cc).
  static SweepRegistry* Registry(Sweeper& s);
  // Its Register() and Unregister(), for a test's own Sweepable.
  static void Register(Sweeper& s, Sweepable* cache) { Registry(s)->Register(cache); }
  static void Unregister(Sweeper& s, Sweepable* cache) { Registry(s)->Unregister(cache); }
  // The park step of the background thread, and whether the sweeper is parked (src/sweeper.cc).
  static bool ParkIfIdle(Sweeper& s);
  static bool parked(const Sweeper& s);
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SWEEPER_ACCESS_H_
