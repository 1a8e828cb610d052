// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The system's memory pressure, for sweepers (sweeper.h).

#include <cstdio>
#include <cstring>

#include "syncpool/internal/env.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace {

class SystemPressure final : public PressureSource {
 public:
  SystemPressure()
      : stall_pct_(internal::EnvNumber("SYNCPOOL_PRESSURE_STALL_PCT", 10.0, 0.0, 100.0)),
        available_pct_(
            internal::EnvNumber("SYNCPOOL_PRESSURE_AVAILABLE_PCT", 5.0, 0.0, 100.0)) {}

  bool UnderPressure() override {
    double avg10;
    if (ReadStall(&avg10)) return avg10 >= stall_pct_;
    unsigned long long total_kib;
    unsigned long long available_kib;
    if (ReadMemInfo(&total_kib, &available_kib) && total_kib != 0) {
      return static_cast<double>(available_kib) * 100.0 <
             available_pct_ * static_cast<double>(total_kib);
    }
    return false;
  }

 private:
  // "some avg10=1.23 avg60=... total=..." from /proc/pressure/memory (Linux 4.20 and later,
  // with PSI enabled).
  static bool ReadStall(double* avg10) {
    std::FILE* f = std::fopen("/proc/pressure/memory", "re");
    if (f == nullptr) return false;
    const bool ok = std::fscanf(f, "some avg10=%lf", avg10) == 1;
    std::fclose(f);
    return ok;
  }

  static bool ReadMemInfo(unsigned long long* total_kib, unsigned long long* available_kib) {
    std::FILE* f = std::fopen("/proc/meminfo", "re");
    if (f == nullptr) return false;
    char line[256];
    int found = 0;
    while (found != 2 && std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::sscanf(line, "MemTotal: %llu kB", total_kib) == 1) ++found;
      if (std::sscanf(line, "MemAvailable: %llu kB", available_kib) == 1) ++found;
    }
    std::fclose(f);
    return found == 2;
  }

  const double stall_pct_;
  const double available_pct_;
};

}  // namespace

PressureSource& SystemMemoryPressure() {
  static PressureSource* const source = new SystemPressure();  // Never destroyed.
  return *source;
}

}  // namespace syncpool
