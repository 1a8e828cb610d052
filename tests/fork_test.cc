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
//
// Under AddressSanitizer the workers stop at a gate, holding nothing, while the process forks.
// clang 14's ASan runtime does not take its allocator's locks around fork(): a child forked
// while another thread was inside malloc hangs at its first allocation. This is the stack such
// a child printed (tests/fork_test.cc's watchdog, under load; 5 of 18 runs of 200 forks hung):
//   #0 __sanitizer::FutexWait  #1 __sanitizer::Semaphore::Wait
//   #2 SizeClassAllocator64<__asan::AP64<...>>::GetFromAllocator
//   #3 SizeClassAllocator64LocalCache<...>::Refill  #4 CombinedAllocator<...>::Allocate
//   #5 __asan::Allocator::Allocate  #6 __asan::asan_memalign  #7 operator new(size_t, align_val_t)
//   #8 syncpool::PoolResource::AllocateUnserved (AllocateUnpooled now)
//   #9 PoolResource::AllocateSlow  #10 do_allocate
//   #11 Work (the child, after fork())
// The region mutex of ASan's size-class allocator was held by a parent's worker at the fork.
// No lock of syncpool's is involved (the fork handlers take all of them), and syncpool cannot
// take the sanitizer's. So in that configuration the children still use every pool, resource
// and sweeper after fork(), and the workers still run between forks, but no worker is inside
// the allocator when fork() is called. The sweepers' threads allocate nothing between sweeps
// (src/pressure.cc) and sweeps cannot be under way (the fork handlers hold their locks). The
// GCC and clang configurations keep forking while the workers run.
//
// A hung child is diagnosed before it dies: after kChildTimeout the parent attaches gdb to it
// (when gdb is installed) and prints every thread's stack; the child's own alarm, later, prints
// its stack with backtrace_symbols_fd() (addresses to resolve with addr2line) and dies of
// SIGALRM.

#include <execinfo.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
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
// How long the parent waits for a child before it prints the child's stacks and kills it, and
// the child's own alarm, a backstop for when the parent cannot attach.
constexpr auto kChildTimeout = std::chrono::seconds(30);
constexpr unsigned kChildAlarmSeconds = 45;
// How long the parent's forks may take in all before it prints its own threads' stacks and
// aborts (the test's timeout is 300 s).
constexpr auto kParentTimeout = std::chrono::seconds(150);

// The child's SIGALRM handler: its stack on stderr, then death by SIGALRM. backtrace() was
// called once in the parent, so that it loads nothing (no allocation) here.
void PrintStackAndDie(int sig) {
  static const char kHeader[] = "child: hung; its stack (resolve with addr2line):\n";
  [[maybe_unused]] ssize_t ignored = write(STDERR_FILENO, kHeader, sizeof(kHeader) - 1);
  void* frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

// Waits for `pid` for up to kChildTimeout. Past it, prints the child's threads' stacks with
// gdb (when there is one), kills the child and reaps it. Returns the child's wait status.
int WaitForChild(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    usleep(1000);
  }
  std::fprintf(stderr, "child %d: no exit after %llds; its threads:\n", pid,
               static_cast<long long>(kChildTimeout.count()));
  const std::string gdb = "command -v gdb >/dev/null && gdb -nx -batch -p " +
                          std::to_string(pid) + " -ex 'thread apply all bt' 1>&2";
  if (std::system(gdb.c_str()) != 0) std::fprintf(stderr, "(gdb could not attach)\n");
  kill(pid, SIGALRM);  // Its handler prints its stack too, then it dies.
  sleep(2);
  kill(pid, SIGKILL);
  if (waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

// A child's failures: reported on stderr and as its exit status (the parent's EXPECTs cannot
// see the child's).
#define CHILD_CHECK(condition)                                                     \
  do {                                                                             \
    if (!(condition)) {                                                            \
      std::fprintf(stderr, "child %d: check failed: %s\n", getpid(), #condition); \
      _exit(3);                                                                    \
    }                                                                              \
  } while (0)

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
constexpr bool kWorkersStopAtForks = true;  // See the top of the file.
#else
constexpr bool kWorkersStopAtForks = false;
#endif

struct Shared {
  Sweeper sweeper{Sweeper::Options::Every(std::chrono::milliseconds(1))};
  std::unique_ptr<PoolResource> resource;
  std::unique_ptr<Pool<std::string>> pool;
  std::atomic<bool> stop{false};

  // The fork gate (kWorkersStopAtForks): while `closed`, workers wait in Pass(), holding
  // nothing; `waiting` counts them.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool closed = false;
  int waiting = 0;

  // Workers call it between rounds of work.
  void Pass() {
    std::unique_lock<std::mutex> l(gate_mu);
    if (!closed) return;
    ++waiting;
    gate_cv.notify_all();
    gate_cv.wait(l, [this] { return !closed; });
    --waiting;
  }
  // Returns once every worker waits at the gate.
  void Close(int workers) {
    std::unique_lock<std::mutex> l(gate_mu);
    closed = true;
    gate_cv.wait(l, [this, workers] { return waiting == workers; });
  }
  void Open() {
    std::lock_guard<std::mutex> l(gate_mu);
    closed = false;
    gate_cv.notify_all();
  }
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
      while (!shared.stop.load(std::memory_order_relaxed)) {
        Work(shared, kWorkersStopAtForks ? 10 : 100);
        if (kWorkersStopAtForks) shared.Pass();
      }
    });
  }
  {
    void* frames[4];
    backtrace(frames, 4);  // Loads the unwinder now, not in a hung child's signal handler.
  }
  // The parent's own watchdog: should the parent itself hang (in a fork() or a worker), every
  // one of its threads' stacks is printed well before the test's timeout ends the process
  // without a word. A detached thread that outlives the test only when it hangs.
  auto parent_done = std::make_shared<std::atomic<bool>>(false);
  std::thread([parent_done] {
    const auto deadline = std::chrono::steady_clock::now() + kParentTimeout;
    while (!parent_done->load()) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr, "parent: no progress after %llds; its threads:\n",
                     static_cast<long long>(kParentTimeout.count()));
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);  // Lets its own gdb (a child) attach.
        const std::string gdb = "command -v gdb >/dev/null && gdb -nx -batch -p " +
                                std::to_string(getpid()) + " -ex 'thread apply all bt' 1>&2";
        if (std::system(gdb.c_str()) != 0) std::fprintf(stderr, "(gdb could not attach)\n");
        std::abort();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }).detach();
  int exited_ok = 0;
  for (int i = 0; i < kForks; ++i) {
    Work(shared, 10);  // The forking thread uses them too, right up to the fork.
    if (kWorkersStopAtForks) shared.Close(kWorkers);
    const pid_t pid = fork();
    if (kWorkersStopAtForks && pid != 0) shared.Open();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);  // Lets the parent's gdb attach.
      signal(SIGALRM, PrintStackAndDie);
      alarm(kChildAlarmSeconds);  // A deadlock ends in SIGALRM, if the parent missed it.
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
    const int status = WaitForChild(pid);
    ASSERT_NE(status, -1) << std::strerror(errno);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++exited_ok;
    } else {
      ADD_FAILURE() << "fork " << i << ": child status " << status
                    << (WIFSIGNALED(status) ? " (killed by a signal)" : "");
    }
  }
  shared.stop.store(true);
  for (std::thread& w : workers) w.join();
  parent_done->store(true);
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
