// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The SYNCPOOL_STATS=1 report (internal/stats_report.h).
//
// Protocol: `Registry::mu` guards the list. Entries add themselves on construction and remove
// themselves on destruction, so the exit handler and LiveStats(), which walk the list under
// `mu`, only call the stats functions of live owners (an owner being destroyed waits in its
// entry's destructor, its first, until the walk is done). The registry is never destroyed, so entries destroyed
// during static destruction, after the handler ran, still find it.

#include "src/stats_report.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "src/fork.h"
#include "src/option_table.h"
#include "src/mutex.h"

namespace syncpool {
namespace internal {
namespace {

struct Entry {
  const StatsReportEntry* key;
  std::function<Stats()> stats;
};

struct Registry {
  Mutex mu;
  std::vector<Entry> entries ABSL_GUARDED_BY(mu);
  // With SYNCPOOL_STATS=1, the pools destroyed before the report: their Stats' text at
  // destruction.
  std::vector<std::string> destroyed ABSL_GUARDED_BY(mu);
  bool handler_installed ABSL_GUARDED_BY(mu) = false;
};

bool ReportEnabled() {
  static const bool enabled = ProcessOption(kOptStats) != 0;
  return enabled;
}

Registry& GetRegistry() {
  static Registry* const registry = new Registry();  // Never destroyed (see above).
  return *registry;
}

// `text` is a DebugString(): its first line is the label.
void PrintOne(std::FILE* out, const std::string& text, const char* when) {
  const size_t eol = text.find('\n');
  const std::string label = text.substr(0, eol);
  const std::string rest = eol == std::string::npos ? "" : text.substr(eol + 1);
  std::fprintf(out, "syncpool stats, %s%s:\n  %s\n", label.c_str(), when,
               absl::StrReplaceAll(rest.substr(0, rest.empty() ? 0 : rest.size() - 1),
                                   {{"\n", "\n  "}})
                   .c_str());
}

}  // namespace

std::string PoolLabel(const char* kind, const std::string& name, const void* owner) {
  // Not absl::StrFormat: an exception (std::bad_alloc) from the string it grows cannot leave
  // its frames (the packaged version terminates instead), and pools are made under memory
  // limits too (tests/allocation_failure_test.cc).
  if (!name.empty()) return std::string(kind) + " \"" + name + "\"";
  char at[40];
  std::snprintf(at, sizeof(at), " at %p", owner);
  return std::string(kind) + at;
}

StatsReportEntry::StatsReportEntry(std::string kind, std::string name, const void* owner,
                                   std::function<Stats()> stats)
    : label_(PoolLabel(kind.c_str(), name, owner)) {
  Registry& r = GetRegistry();
  MutexLock l(&r.mu);
  r.entries.push_back(Entry{this, std::move(stats)});
  if (ReportEnabled() && !r.handler_installed) {
    r.handler_installed = true;
    std::atexit(&PrintStatsReport);
  }
}

StatsReportEntry::~StatsReportEntry() {
  Registry& r = GetRegistry();
  MutexLock l(&r.mu);
  for (auto it = r.entries.begin(); it != r.entries.end(); ++it) {
    if (it->key == this) {
      // The owner is whole still (its entry goes first): its totals, for the report.
      if (ReportEnabled()) r.destroyed.push_back(it->stats().DebugString());
      r.entries.erase(it);
      break;
    }
  }
}

namespace {

// The report's fork layer (fork.h, rank kStatsReport). Taken in one function, released in the
// other: beyond what the analysis follows.
void LockReportForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { GetRegistry().mu.Lock(); }
void UnlockReportAfterFork(bool /*child*/) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  GetRegistry().mu.Unlock();
}

ForkLayer report_fork(ForkRank::kStatsReport, &LockReportForFork, &UnlockReportAfterFork);

}  // namespace

void PrintStatsReport() {
  Registry& r = GetRegistry();
  MutexLock l(&r.mu);
  for (const Entry& e : r.entries) PrintOne(stderr, e.stats().DebugString(), "");
  for (const std::string& text : r.destroyed) PrintOne(stderr, text, " (at its destruction)");
}

}  // namespace internal

std::vector<Stats> LiveStats() {
  internal::Registry& r = internal::GetRegistry();
  std::vector<Stats> all;
  internal::MutexLock l(&r.mu);
  all.reserve(r.entries.size());
  for (const internal::Entry& e : r.entries) all.push_back(e.stats());
  return all;
}

void PrintStats(std::FILE* out) {
  for (const Stats& s : LiveStats()) internal::PrintOne(out, s.DebugString(), "");
}

}  // namespace syncpool
