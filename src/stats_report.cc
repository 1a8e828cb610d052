// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The SYNCPOOL_STATS=1 report (internal/stats_report.h).
//
// Protocol: `Registry::mu` guards the list. Entries add themselves on construction and remove
// themselves on destruction, so the exit handler, which walks the list under `mu`, only calls
// the stats functions of live owners. The registry is never destroyed, so entries destroyed
// during static destruction, after the handler ran, still find it.

#include "syncpool/internal/stats_report.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "syncpool/internal/option_table.h"
#include "syncpool/internal/mutex.h"

namespace syncpool {
namespace internal {
namespace {

struct Entry {
  const StatsReportEntry* key;
  std::string label;
  std::function<Stats()> stats;
};

struct Registry {
  Mutex mu;
  std::vector<Entry> entries ABSL_GUARDED_BY(mu);
  // Pools destroyed before the report: their label and their Stats' text at destruction.
  std::vector<std::pair<std::string, std::string>> destroyed ABSL_GUARDED_BY(mu);
  bool handler_installed ABSL_GUARDED_BY(mu) = false;
};

Registry& GetRegistry() {
  static Registry* const registry = new Registry();  // Never destroyed (see above).
  return *registry;
}

void PrintOne(const std::string& label, const std::string& text, const char* when) {
  std::fprintf(stderr, "syncpool stats, %s%s:\n  %s\n", label.c_str(), when,
               absl::StrReplaceAll(text.substr(0, text.size() - 1), {{"\n", "\n  "}}).c_str());
}

}  // namespace

std::string PoolLabel(const char* kind, const std::string& name, const void* owner) {
  return name.empty() ? absl::StrFormat("%s at %p", kind, owner)
                      : absl::StrFormat("%s \"%s\"", kind, name);
}

StatsReportEntry::StatsReportEntry(std::string kind, std::string name, const void* owner,
                                   std::function<Stats()> stats) {
  static const bool enabled = ProcessOption(kOptStats) != 0;
  if (!enabled) return;
  std::string label = PoolLabel(kind.c_str(), name, owner);
  Registry& r = GetRegistry();
  MutexLock l(&r.mu);
  r.entries.push_back(Entry{this, std::move(label), std::move(stats)});
  registered_ = true;
  if (!r.handler_installed) {
    r.handler_installed = true;
    std::atexit(&PrintStatsReport);
  }
}

StatsReportEntry::~StatsReportEntry() {
  if (!registered_) return;
  Registry& r = GetRegistry();
  MutexLock l(&r.mu);
  for (auto it = r.entries.begin(); it != r.entries.end(); ++it) {
    if (it->key == this) {
      // The owner is whole still (its entry goes first): its totals, for the report.
      r.destroyed.emplace_back(std::move(it->label), it->stats().DebugString());
      r.entries.erase(it);
      break;
    }
  }
}

// Taken here, released in the next function: beyond what the analysis follows.
void LockStatsReportForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { GetRegistry().mu.Lock(); }
void UnlockStatsReportAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { GetRegistry().mu.Unlock(); }

void PrintStatsReport() {
  Registry& r = GetRegistry();
  MutexLock l(&r.mu);
  for (const Entry& e : r.entries) PrintOne(e.label, e.stats().DebugString(), "");
  for (const auto& [label, text] : r.destroyed) PrintOne(label, text, " (at its destruction)");
}

}  // namespace internal
}  // namespace syncpool
