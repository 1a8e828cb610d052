// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/stats_report.h
// -----------------------------------------------------------------------------
//
// The list of live pools behind LiveStats() and PrintStats() (stats.h), and SYNCPOOL_STATS=1:
// at exit, every pool and resource alive then prints its Stats on stderr, and every one
// destroyed before prints the Stats it had at its destruction. Not part of syncpool's API.
// Pools and resources hold a StatsReportEntry, which registers them for their lifetime and,
// when the variable is set (read once per process), keeps their last Stats at destruction for
// the report; the report runs from an atexit handler installed by the first registration.

#ifndef SYNCPOOL_SRC_STATS_REPORT_H_
#define SYNCPOOL_SRC_STATS_REPORT_H_

#include <functional>
#include <string>

#include "syncpool/stats.h"

namespace syncpool {
namespace internal {

// How messages and reports name a pool: `<kind> "<name>"`, or `<kind> at <address>` when it
// has no name.
std::string PoolLabel(const char* kind, const std::string& name, const void* owner);

class StatsReportEntry {
 public:
  // `name` labels the report (PoolLabel()); `stats` is called at exit, on the exiting thread,
  // while the owner is alive, or at the entry's destruction, which the owner runs first among
  // its members so that it is still whole.
  StatsReportEntry(std::string kind, std::string name, const void* owner,
                   std::function<Stats()> stats);
  StatsReportEntry(const StatsReportEntry&) = delete;
  StatsReportEntry& operator=(const StatsReportEntry&) = delete;
  ~StatsReportEntry();

  // The owner's label (PoolLabel()), for its Stats.
  const std::string& label() const { return label_; }

 private:
  const std::string label_;
};

// Prints the report now (what the exit handler does); for tests.
void PrintStatsReport();

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_STATS_REPORT_H_
