// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// fork() while threads use pools and sweeps run: the process forks 200 times while worker
// threads allocate, free, Get and Put through the default resource, a resource with its own
// background sweeper (an epoch every millisecond) and a Pool<T>. Each child, on the forking
// thread alone, uses every one of them, runs epochs with SweepNow(), checks that its sweeper's
// thread starts again once a cache takes a slow path, and exits; an alarm kills a child that
// deadlocks. The parent checks that every child exited with status 0, and its own pools keep
// working. Under ThreadSanitizer, whose runtime does not support fork() in a process with
// threads, the test is skipped.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace {

#ifndef ABSL_HAVE_THREAD_SANITIZER

constexpr int kForks = 200;
constexpr int kWorkers = 2;

// A child's failures: reported on stderr and as its exit status (the parent's EXPECTs cannot
// see the child's).
#define CHILD_CHECK(condition)                                                     \
  do {                                                                             \
    if (!(condition)) {                                                            \
      std::fprintf(stderr, "child %d: check failed: %s\n", getpid(), #condition); \
      _exit(3);                                                                    \
    }                                                                              \
  } while (0)

struct Shared {
  Sweeper sweeper{Sweeper::Options::Every(std::chrono::milliseconds(1))};
  std::unique_ptr<PoolResource> resource;
  std::unique_ptr<Pool<std::string>> pool;
  std::atomic<bool> stop{false};
};

// Allocates, writes, frees; Gets and Puts. Runs in the workers and in each child.
void Work(Shared& shared, int rounds) {
  std::pmr::memory_resource* resources[] = {&PoolResource::Default(), shared.resource.get()};
  for (int i = 0; i < rounds; ++i) {
    for (std::pmr::memory_resource* r : resources) {
      const size_t size = 16 + (i * 37) % 3000;
      auto* p = static_cast<char*>(r->allocate(size));
      std::memset(p, i, size);
      r->deallocate(p, size);
    }
    auto s = shared.pool->Get();
    s->assign(100, 'x');
  }
}

TEST(ForkTest, ChildrenUsePoolsWhileTheParentsThreadsDoAndSweepsRun) {
  Shared shared;
  Options options;
  options.sweeper = &shared.sweeper;
  options.max_blocks_per_class = 8;  // Small caches: spills and the TransferStack too.
  shared.resource = std::make_unique<PoolResource>(options);
  shared.pool = std::make_unique<Pool<std::string>>(
      [] { return std::make_unique<std::string>(); }, [](std::string& s) { s.clear(); },
      options);

  std::vector<std::thread> workers;
  for (int t = 0; t < kWorkers; ++t) {
    workers.emplace_back([&shared] {
      while (!shared.stop.load(std::memory_order_relaxed)) Work(shared, 100);
    });
  }
  int exited_ok = 0;
  for (int i = 0; i < kForks; ++i) {
    Work(shared, 10);  // The forking thread uses them too, right up to the fork.
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      alarm(30);  // A deadlock ends in SIGALRM.
      Work(shared, 200);
      shared.sweeper.SweepNow();
      Sweeper::Default().SweepNow();
      // A miss is a slow path: the sweeper's thread starts again in the child.
      shared.resource->deallocate(shared.resource->allocate(200000), 200000);
      CHILD_CHECK(shared.sweeper.thread_running());
      Work(shared, 200);
      shared.resource->Trim();
      CHILD_CHECK(shared.resource->GetStats().cached_blocks() == 0);
      shared.pool->Clear();
#ifndef ABSL_HAVE_ADDRESS_SANITIZER
      // Every other child runs the exit handlers too (the default sweeper stops its thread).
      // Not under AddressSanitizer: its leak check at exit would report what the parent's
      // other threads held at the fork, which no thread of the child can reach.
      if (i % 2 == 1) std::exit(0);
#endif
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++exited_ok;
    } else {
      ADD_FAILURE() << "fork " << i << ": child status " << status
                    << (WIFSIGNALED(status) ? " (killed by a signal)" : "");
    }
  }
  shared.stop.store(true);
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(exited_ok, kForks);
  // The parent's pools still work and its sweeper still runs.
  Work(shared, 100);
  EXPECT_TRUE(shared.sweeper.thread_running());
  shared.resource->Trim();
  EXPECT_EQ(shared.resource->GetStats().cached_blocks(), 0u);
}

#else  // ABSL_HAVE_THREAD_SANITIZER

TEST(ForkTest, ChildrenUsePoolsWhileTheParentsThreadsDoAndSweepsRun) {
  GTEST_SKIP() << "ThreadSanitizer does not support fork() with threads running";
}

#endif

}  // namespace
}  // namespace syncpool
