// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/fragmentation.cc
// -----------------------------------------------------------------------------
//
// What a fragmented heap keeps resident: allocate N small blocks, free a random 90 % of them
// (a fixed seed), let the allocator give back what it can, then allocate the 90 % again. Each
// allocator runs in a child process of its own, so that the resident sets do not mix:
//   syncpool   a PoolResource over DefaultUpstream() (mimalloc) with a sweeper without a
//              thread; "give back" is two SweepNow() calls (the epochs: the blocks leave the
//              caches, and every wholly free span goes upstream)
//   mimalloc   mi_malloc / mi_free called directly; "give back" is mi_collect(true)
//
//   bazel run -c opt //bench:fragmentation -- [blocks [bytes [kept_percent]]]
//
// Defaults: 1,000,000 blocks of 64 bytes, 10 % kept. Prints, per allocator, what the resident
// set (VmRSS) grew by since just before the first allocation: after it, after the frees and
// the give-back, and after the second allocation, in MiB, and the ratios to mimalloc.

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace {

struct Mimalloc {
  void* (*malloc)(size_t) = nullptr;
  void (*free)(void*) = nullptr;
  void (*collect)(bool) = nullptr;
};

// The calling process's resident set in bytes (VmRSS of /proc/self/status).
uint64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

struct Config {
  size_t blocks = 1000000;
  size_t bytes = 64;
  size_t kept_percent = 10;
};

// The three resident sets, written by the child into a pipe.
struct Result {
  uint64_t allocated = 0;
  uint64_t after_free = 0;
  uint64_t reallocated = 0;
};

// Allocates, frees the same random 90 % in every child, gives back, allocates again.
template <typename Allocate, typename Deallocate, typename GiveBack>
Result Run(const Config& config, Allocate allocate, Deallocate deallocate, GiveBack give_back) {
  // The bookkeeping first, so that the resident sets differ by the allocator's work only.
  std::vector<void*> blocks(config.blocks);
  std::vector<size_t> order(config.blocks);
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 rng(12345);
  std::shuffle(order.begin(), order.end(), rng);
  const uint64_t before = ResidentBytes();
  for (void*& p : blocks) {
    p = allocate();
    static_cast<char*>(p)[0] = 1;  // Touched, as a program would.
  }
  Result r;
  r.allocated = ResidentBytes() - before;
  const size_t freed = config.blocks - config.blocks * config.kept_percent / 100;
  for (size_t i = 0; i < freed; ++i) deallocate(blocks[order[i]]);
  give_back();
  r.after_free = ResidentBytes() - before;
  for (size_t i = 0; i < freed; ++i) {
    blocks[order[i]] = allocate();
    static_cast<char*>(blocks[order[i]])[0] = 1;
  }
  r.reallocated = ResidentBytes() - before;
  for (void* p : blocks) deallocate(p);
  return r;
}

Result RunSyncpool(const Config& config) {
  syncpool::Sweeper sweeper{syncpool::Sweeper::Options::Manual()};
  syncpool::Options options;
  options.sweeper = &sweeper;
  syncpool::PoolResource pool(options);
  return Run(
      config, [&] { return pool.allocate(config.bytes); },
      [&](void* p) { pool.deallocate(p, config.bytes); },
      [&] {
        sweeper.SweepNow();
        sweeper.SweepNow();
      });
}

Result RunMimalloc(const Config& config, const Mimalloc& mi) {
  return Run(
      config, [&] { return mi.malloc(config.bytes); }, [&](void* p) { mi.free(p); },
      [&] { mi.collect(true); });
}

// Runs `f` in a child process and returns its Result; false when the child failed.
template <typename F>
bool InChild(F f, Result* out) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const Result r = f();
    const bool written = write(fds[1], &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r));
    _exit(written ? 0 : 1);
  }
  close(fds[1]);
  const bool read_all = read(fds[0], out, sizeof(*out)) == static_cast<ssize_t>(sizeof(*out));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return read_all && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

int main(int argc, char** argv) {
  Config config;
  if (argc > 1) config.blocks = std::strtoull(argv[1], nullptr, 10);
  if (argc > 2) config.bytes = std::strtoull(argv[2], nullptr, 10);
  if (argc > 3) config.kept_percent = std::strtoull(argv[3], nullptr, 10);
  if (config.blocks == 0 || config.bytes == 0 || config.kept_percent > 100) {
    std::fprintf(stderr, "usage: fragmentation [blocks [bytes [kept_percent (0-100)]]]\n");
    return 2;
  }
  Mimalloc mi;
  if (void* library = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL)) {
    mi.malloc = reinterpret_cast<void* (*)(size_t)>(dlsym(library, "mi_malloc"));
    mi.free = reinterpret_cast<void (*)(void*)>(dlsym(library, "mi_free"));
    mi.collect = reinterpret_cast<void (*)(bool)>(dlsym(library, "mi_collect"));
  }
  std::printf("%zu blocks of %zu bytes (%.1f MiB), %zu %% kept; growth of the resident set (VmRSS), MiB\n",
              config.blocks, config.bytes, MiB(config.blocks * config.bytes),
              config.kept_percent);
  std::printf("%-10s %12s %18s %14s\n", "allocator", "allocated", "freed+given back",
              "reallocated");
  Result sp;
  Result mr;
  const bool have_sp = InChild([&] { return RunSyncpool(config); }, &sp);
  const bool have_mi = mi.malloc != nullptr && mi.free != nullptr && mi.collect != nullptr &&
                       InChild([&] { return RunMimalloc(config, mi); }, &mr);
  if (have_sp) {
    std::printf("%-10s %12.1f %18.1f %14.1f\n", "syncpool", MiB(sp.allocated),
                MiB(sp.after_free), MiB(sp.reallocated));
  }
  if (have_mi) {
    std::printf("%-10s %12.1f %18.1f %14.1f\n", "mimalloc", MiB(mr.allocated),
                MiB(mr.after_free), MiB(mr.reallocated));
  } else {
    std::printf("mimalloc: not loaded (%s)\n", dlerror() != nullptr ? "dlopen failed" : "");
  }
  if (have_sp && have_mi) {
    std::printf("syncpool / mimalloc: %.2f allocated, %.2f freed+given back, %.2f reallocated\n",
                static_cast<double>(sp.allocated) / static_cast<double>(mr.allocated),
                static_cast<double>(sp.after_free) / static_cast<double>(mr.after_free),
                static_cast<double>(sp.reallocated) / static_cast<double>(mr.reallocated));
  }
  return have_sp ? 0 : 1;
}
