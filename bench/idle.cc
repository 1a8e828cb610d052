// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/idle.cc
// -----------------------------------------------------------------------------
//
// What an idle process pays for syncpool: one allocate and deallocate of 1 KiB through
// PoolResource::Default(), a wait of three default sweep intervals (the epochs release the
// block, and the sweeper's thread parks), then ten seconds of sleep, over which it counts the
// voluntary context switches of every thread of the process (/proc/self/task/*/status): the
// main thread's sleep is one, and each wake-up of the sweeper's thread one more.
//
//   bazel run -c opt //bench:idle
//
// Prints one line per thread and the total; exits 1 if the sweeper's thread woke up more than
// once in the ten seconds.

#include <dirent.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"
#include "src/sweeper_access.h"

namespace {

struct Task {
  std::string name;
  int64_t voluntary = 0;
};

// Every thread of the process: its name and voluntary context switches.
std::map<std::string, Task> Tasks() {
  std::map<std::string, Task> tasks;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return tasks;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + entry->d_name;
    Task task;
    std::ifstream comm(path + "/comm");
    std::getline(comm, task.name);
    std::ifstream status(path + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        task.voluntary = std::stoll(line.substr(line.find(':') + 1));
      }
    }
    tasks[entry->d_name] = task;
  }
  closedir(dir);
  return tasks;
}

}  // namespace

int main() {
  syncpool::PoolResource& pool = syncpool::PoolResource::Default();
  void* p = pool.allocate(1024);
  pool.deallocate(p, 1024);
  const auto interval = syncpool::Sweeper::Default().interval();
  std::this_thread::sleep_for(3 * interval);
  std::printf("after 3 intervals of %lld ms: %llu bytes cached, sweeper %s\n",
              static_cast<long long>(interval.count()),
              static_cast<unsigned long long>(pool.GetStats().cached_bytes()),
              syncpool::internal::SweeperAccess::parked(syncpool::Sweeper::Default())
                  ? "parked"
                  : "not parked");
  const std::map<std::string, Task> before = Tasks();
  std::this_thread::sleep_for(std::chrono::seconds(10));
  const std::map<std::string, Task> after = Tasks();
  int64_t total = 0;
  int64_t sweeper = 0;
  for (const auto& [tid, task] : after) {
    const auto it = before.find(tid);
    const int64_t switches = task.voluntary - (it != before.end() ? it->second.voluntary : 0);
    std::printf("thread %s (%s): %lld voluntary context switches in 10 s\n", tid.c_str(),
                task.name.c_str(), static_cast<long long>(switches));
    total += switches;
    if (task.name == "syncpool-sweep") sweeper += switches;
  }
  std::printf("total: %lld (the main thread's sleep is 1); the sweeper's thread: %lld\n",
              static_cast<long long>(total), static_cast<long long>(sweeper));
  return sweeper <= 1 ? 0 : 1;
}
