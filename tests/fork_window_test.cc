// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// fork() while another thread is joining a cache to its sweeper (src/test_seams.h's
// g_registering_for_test stops it there, holding the registrations' lock): the fork handlers
// wait for the lock (src/fork.h, rank kRegistrations), so the child finds it free and both the
// cache that was joining and a new one work there. Without that rank, the fork went ahead with
// the lock held and the child hung at the cache's first use.
//
// How the test knows where the forking thread is, without sleeping: two fork layers of its own
// mark the ranks around the registrations' (`before`: the last layer of kStatsReport; `after`:
// the last of kSweepers). The stopped thread waits until `before` is marked, then until either
// the forking thread is asleep (blocked on the lock it holds: the protocol works, and it lets
// the fork go on) or `after` is marked (the fork went past the rank with the lock held: it
// keeps the lock until the parent's side of the fork is over, so that the child is forked
// with it held, and the child's alarm turns the hang into a failure).
// When the protocol works, a third layer of the test (the last of kRegistrations, so run with
// the registrations' lock just taken and no cache lock yet) waits until the stopped thread has
// finished its allocations: the fork then finds it spinning in the test, outside every
// allocator (AddressSanitizer's takes no lock around fork(): tests/fork_test.cc).
// Under ThreadSanitizer, whose runtime does not support fork() with threads, it is skipped.

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "src/fork.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace internal {
namespace {

#ifndef ABSL_HAVE_THREAD_SANITIZER

constexpr unsigned kChildAlarmSeconds = 20;

std::atomic<bool> g_armed{false};      // The next registration stops in the hook.
std::atomic<bool> g_in_hook{false};    // A registration is stopped there.
std::atomic<bool> g_let_go{false};     // The hook saw the forking thread asleep and returned.
std::atomic<bool> g_worker_done{false};  // The stopped thread's allocations are over.
std::atomic<bool> g_before{false};     // The fork handlers reached the registrations' rank.
std::atomic<bool> g_after{false};      // They went past it.
std::atomic<bool> g_parent_done{false};  // The parent's side of the fork is over.
std::atomic<bool> g_lock_held_at_fork{false};
std::atomic<pid_t> g_forking_tid{0};

// Whether thread `tid` of this process is asleep (state S: blocked in the kernel, as on a
// mutex's futex).
bool Asleep(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::stringstream text;
  text << in.rdbuf();
  const std::string stat = text.str();
  const size_t paren = stat.rfind(')');  // The command name may hold spaces.
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'S';
}

void StopWhileRegistering() {
  if (!g_armed.exchange(false)) return;
  g_in_hook.store(true);
  while (!g_before.load()) {
  }
  for (;;) {
    if (g_after.load()) {
      g_lock_held_at_fork.store(true);
      while (!g_parent_done.load()) {
      }
      return;
    }
    if (Asleep(g_forking_tid.load())) {
      g_let_go.store(true);
      return;
    }
  }
}

void MarkBefore() { g_before.store(true); }
// Run with the registrations' lock held. Set before the hook returned and the lock was freed,
// g_let_go is read true here when the protocol works (the fork then waits for the worker's
// allocations, which take no lock the fork handlers hold yet: the worker has its thread slot,
// taken before its registration); when the fork went past a held lock it is false, and waiting
// would deadlock with the hook, which waits for the fork.
void WaitForWorker() {
  if (!g_let_go.load()) return;
  while (!g_worker_done.load()) {
  }
}
void MarkAfter() { g_after.store(true); }
void NoteUnlock(bool child) {
  if (!child) g_parent_done.store(true);
}

Options ResourceOptions(Sweeper* sweeper) {
  Options options;
  options.sweeper = sweeper;
  options.debug_checks = false;  // No allocation of the checks' own in the child.
  return options;
}

// Allocates, writes and frees a few sizes through `resource`; returns whether all went well.
bool Use(PoolResource& resource) {
  for (size_t size : {16u, 200u, 3000u}) {
    auto* p = static_cast<unsigned char*>(resource.allocate(size));
    if (p == nullptr) return false;
    for (size_t i = 0; i < size; ++i) p[i] = static_cast<unsigned char>(i);
    resource.deallocate(p, size);
  }
  return true;
}

TEST(ForkWindowTest, AForkWaitsForACacheJoiningItsSweeper) {
  // No background thread: nothing but the two threads of the test takes a lock.
  Sweeper sweeper(Sweeper::Options::Manual());
  // Joined now, after the library's own layers: the last of their ranks.
  new ForkLayer(ForkRank::kStatsReport, &MarkBefore, &NoteUnlock);
  new ForkLayer(ForkRank::kRegistrations, &WaitForWorker, [](bool) {});
  new ForkLayer(ForkRank::kSweepers, &MarkAfter, [](bool) {});
  {
    // A first cache joins, so that the fork handlers are installed (the first Sweeper's
    // constructor did already) and the registrations' lock has been used once.
    PoolResource warm(ResourceOptions(&sweeper));
    ASSERT_TRUE(Use(warm));
  }
  g_forking_tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
  g_registering_for_test = &StopWhileRegistering;

  PoolResource joining(ResourceOptions(&sweeper));
  g_armed.store(true);
  std::thread worker([&joining] {
    EXPECT_TRUE(Use(joining));
    g_worker_done.store(true);
    while (!g_parent_done.load()) {  // Outside every allocator until the fork is over.
    }
  });
  while (!g_in_hook.load()) {
  }
  const pid_t pid = fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    signal(SIGALRM, SIG_DFL);
    alarm(kChildAlarmSeconds);  // A hang on the registrations' lock ends in SIGALRM.
    const bool joined_ok = Use(joining);
    PoolResource fresh(ResourceOptions(&sweeper));
    const bool fresh_ok = Use(fresh);
    _exit(joined_ok && fresh_ok ? 0 : 3);
  }
  worker.join();
  g_registering_for_test = nullptr;
  EXPECT_FALSE(g_lock_held_at_fork.load())
      << "fork() went past the registrations' rank while a cache held their lock";
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child status " << status
      << (WIFSIGNALED(status) ? " (killed by a signal: SIGALRM is a hang)" : "");
  // The parent's caches work on.
  EXPECT_TRUE(Use(joining));
}

#else  // ABSL_HAVE_THREAD_SANITIZER

TEST(ForkWindowTest, AForkWaitsForACacheJoiningItsSweeper) {
  GTEST_SKIP() << "ThreadSanitizer does not support fork() with threads running";
}

#endif  // ABSL_HAVE_THREAD_SANITIZER

}  // namespace
}  // namespace internal
}  // namespace syncpool
