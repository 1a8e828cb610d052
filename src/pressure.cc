// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The system's memory pressure, for sweepers (sweeper.h).
//
// The files are read with open() and read() into a buffer on the stack, not through stdio:
// the sweeper's thread asks between epochs, with no lock of syncpool's held, and must not
// allocate there (a fork() at that moment would otherwise depend on the allocator's own fork
// safety, which sanitizer runtimes lack; see tests/fork_test.cc).

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "src/option_table.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace {

class SystemPressure final : public PressureSource {
 public:
  SystemPressure()
      : stall_pct_(internal::EnvOptionNumber(internal::kOptPressureStallPct)),
        available_pct_(internal::EnvOptionNumber(internal::kOptPressureAvailablePct)) {}

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
  // Reads the start of `path` into `buf` (NUL-terminated). False when it cannot be read.
  template <size_t kSize>
  static bool ReadFile(const char* path, char (&buf)[kSize]) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    size_t have = 0;
    while (have < kSize - 1) {
      const ssize_t n = read(fd, buf + have, kSize - 1 - have);
      if (n <= 0) break;
      have += static_cast<size_t>(n);
    }
    close(fd);
    buf[have] = '\0';
    return have != 0;
  }

  // "some avg10=1.23 avg60=... total=..." from /proc/pressure/memory (Linux 4.20 and later,
  // with PSI enabled).
  static bool ReadStall(double* avg10) {
    char buf[256];
    return ReadFile("/proc/pressure/memory", buf) && std::sscanf(buf, "some avg10=%lf", avg10) == 1;
  }

  // MemTotal and MemAvailable, the first and third lines of /proc/meminfo.
  static bool ReadMemInfo(unsigned long long* total_kib, unsigned long long* available_kib) {
    char buf[512];
    if (!ReadFile("/proc/meminfo", buf)) return false;
    const char* total = std::strstr(buf, "MemTotal:");
    const char* available = std::strstr(buf, "MemAvailable:");
    return total != nullptr && available != nullptr &&
           std::sscanf(total, "MemTotal: %llu kB", total_kib) == 1 &&
           std::sscanf(available, "MemAvailable: %llu kB", available_kib) == 1;
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
