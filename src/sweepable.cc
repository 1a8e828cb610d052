// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The sweep's pacer (sweepable.h), in the base layer with the contract it belongs to: the
// sweeper's sweeps make the pacers, the caches pause with them.

#include "src/sweepable.h"

#include <errno.h>
#include <sched.h>
#include <time.h>

namespace syncpool {
namespace internal {

SweepPacer::SweepPacer(std::chrono::nanoseconds slice, std::chrono::nanoseconds pause,
                       const Clock& clock)
    : slice_(slice), pause_(pause), clock_(clock), slice_start_(Now()) {}

void SweepPacer::Pause() {
  if (slice_.count() <= 0) return;
  if (Now() - slice_start_ < slice_) return;
  ++pauses_;
  if (pause_.count() > 0) {
    timespec ts;
    ts.tv_sec = static_cast<time_t>(pause_.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(pause_.count() % 1'000'000'000);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      // A signal: sleep what is left.
    }
  } else {
    sched_yield();
  }
  slice_start_ = Now();
}

}  // namespace internal
}  // namespace syncpool
