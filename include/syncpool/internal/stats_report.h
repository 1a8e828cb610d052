// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/stats_report.h
// -----------------------------------------------------------------------------
//
// SYNCPOOL_STATS=1: every pool and resource alive at exit prints its Stats on stderr. Not part
// of syncpool's API. Pools and resources hold a StatsReportEntry, which registers them when
// the variable is set (checked at each construction) and unregisters them on destruction; the
// report runs from an atexit handler installed by the first registration.

#ifndef SYNCPOOL_INTERNAL_STATS_REPORT_H_
#define SYNCPOOL_INTERNAL_STATS_REPORT_H_

#include <functional>
#include <string>

#include "syncpool/stats.h"

namespace syncpool {
namespace internal {

class StatsReportEntry {
 public:
  // `name` labels the report (with `kind` and the address when empty); `stats` is called at
  // exit, on the exiting thread, while the owner is alive (it unregisters in its destructor).
  StatsReportEntry(std::string kind, std::string name, const void* owner,
                   std::function<Stats()> stats);
  StatsReportEntry(const StatsReportEntry&) = delete;
  StatsReportEntry& operator=(const StatsReportEntry&) = delete;
  ~StatsReportEntry();

 private:
  bool registered_ = false;
};

// Prints the report now (what the exit handler does); for tests.
void PrintStatsReport();

// Take and release the report's lock around fork() (the sweepers' fork handlers call them).
void LockStatsReportForFork();
void UnlockStatsReportAfterFork();

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_STATS_REPORT_H_
