// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of CPU identity: CurrentCpu() stays in [0, NumCpus()) and follows the thread when it is
// pinned, and the ScopedFakeCpu seam overrides it for the calling thread only.

#include "syncpool/internal/cpu.h"

#include <sched.h>

#include <atomic>
#include <climits>
#include <semaphore>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/testing/fake_cpu.h"

namespace syncpool {
namespace internal {
namespace {

using ::syncpool::testing::ScopedFakeCpu;

TEST(CpuTest, NumCpusCoversEveryCpuTheProcessMayRunOn) {
  const int n = NumCpus();
  EXPECT_GE(n, 1);
  EXPECT_EQ(ScopedFakeCpu::NumCpus(), n);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  for (int cpu = n; cpu < CPU_SETSIZE; ++cpu) {
    EXPECT_FALSE(CPU_ISSET(cpu, &allowed)) << "cpu " << cpu << " is allowed but not counted";
  }
}

TEST(CpuTest, CurrentCpuIsInRangeOnEveryThread) {
  const int n = NumCpus();
  std::atomic<int> out_of_range{0};
  auto probe = [&] {
    for (int i = 0; i < 10000; ++i) {
      for (const int cpu : {CurrentCpu(), RealCurrentCpu(), SchedCurrentCpu()}) {
        if (cpu < 0 || cpu >= n) out_of_range.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * n + 2; ++t) threads.emplace_back(probe);
  probe();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(out_of_range.load(), 0);
}

// A thread pinned to one CPU reads that CPU, through rseq or sched_getcpu() alike.
TEST(CpuTest, CurrentCpuFollowsAPinnedThread) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  int pinned = 0;
  for (int cpu = 0; cpu < NumCpus(); ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    std::thread([&, cpu] {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof(one), &one) != 0) return;
      ++pinned;
      for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(CurrentCpu(), cpu);
        EXPECT_EQ(RealCurrentCpu(), cpu);
        EXPECT_EQ(SchedCurrentCpu(), cpu);
        std::this_thread::yield();
      }
    }).join();
  }
  if (pinned == 0) GTEST_SKIP() << "sched_setaffinity is not permitted here";
}

TEST(CpuTest, RseqAvailableMatchesGlibc) {
#if SYNCPOOL_HAVE_GLIBC_RSEQ
  EXPECT_EQ(RseqAvailable(), __rseq_size != 0);
  if (RseqAvailable()) {
    // The registered area holds the CPU the thread last ran on, like sched_getcpu().
    const int cpu = RealCurrentCpu();
    EXPECT_GE(cpu, 0);
    EXPECT_LT(cpu, NumCpus());
  }
#else
  EXPECT_FALSE(RseqAvailable());
#endif
}

TEST(FakeCpuTest, NoFakeCpuOutsideAScope) {
  EXPECT_EQ(FakeCpuOfThisThread(), -1);
  EXPECT_EQ(g_fake_cpu_users.load(), 0);
}

TEST(FakeCpuTest, SetsEveryCpuId) {
  for (int cpu = 0; cpu < NumCpus(); ++cpu) {
    ScopedFakeCpu fake(cpu);
    EXPECT_EQ(FakeCpuOfThisThread(), cpu);
    EXPECT_NE(g_fake_cpu_users.load(), 0);
    for (int i = 0; i < 100; ++i) ASSERT_EQ(CurrentCpu(), cpu);
  }
  EXPECT_EQ(FakeCpuOfThisThread(), -1);
  EXPECT_EQ(g_fake_cpu_users.load(), 0);
}

// While any thread fakes a CPU id the restartable sequences serve no CPU (they would use the
// real one), and they serve every CPU again once the last fake ends, whichever thread ends it.
TEST(FakeCpuTest, ClosesTheSequencesWhileAnyThreadFakes) {
  const uint32_t open = RseqUsable() ? static_cast<uint32_t>(NumCpus()) : 0;
  EXPECT_EQ(g_rseq_cpu_limit.load(), open);
  std::binary_semaphore faking{0}, release{0};
  std::thread other([&] {
    ScopedFakeCpu fake(0);
    faking.release();
    release.acquire();
  });
  faking.acquire();
  EXPECT_EQ(g_rseq_cpu_limit.load(), 0u);
  {
    ScopedFakeCpu fake(NumCpus() - 1);
    EXPECT_EQ(g_rseq_cpu_limit.load(), 0u);
    release.release();
    other.join();  // The other thread's fake ends first: this one's still holds.
    EXPECT_EQ(g_rseq_cpu_limit.load(), 0u);
  }
  EXPECT_EQ(g_rseq_cpu_limit.load(), open);
}

TEST(FakeCpuTest, NestsAndRestores) {
  const int last = NumCpus() - 1;
  {
    ScopedFakeCpu outer(0);
    EXPECT_EQ(CurrentCpu(), 0);
    {
      ScopedFakeCpu inner(last);
      EXPECT_EQ(CurrentCpu(), last);
      {
        ScopedFakeCpu innermost(0);
        EXPECT_EQ(CurrentCpu(), 0);
      }
      EXPECT_EQ(CurrentCpu(), last);
    }
    EXPECT_EQ(CurrentCpu(), 0);
    EXPECT_EQ(FakeCpuOfThisThread(), 0);
  }
  EXPECT_EQ(FakeCpuOfThisThread(), -1);
  EXPECT_EQ(g_fake_cpu_users.load(), 0);
}

TEST(FakeCpuTest, AffectsOnlyTheCallingThread) {
  const int last = NumCpus() - 1;
  ScopedFakeCpu fake(last);

  // Another thread sees no fake CPU while this one has one, and may set its own meanwhile.
  std::binary_semaphore other_set(0);
  std::binary_semaphore main_checked(0);
  std::thread other([&] {
    EXPECT_EQ(FakeCpuOfThisThread(), -1);
    const int cpu = CurrentCpu();
    EXPECT_GE(cpu, 0);
    EXPECT_LT(cpu, NumCpus());
    {
      ScopedFakeCpu mine(0);
      EXPECT_EQ(CurrentCpu(), 0);
      other_set.release();
      main_checked.acquire();
      EXPECT_EQ(CurrentCpu(), 0);
    }
    EXPECT_EQ(FakeCpuOfThisThread(), -1);
  });
  other_set.acquire();
  EXPECT_EQ(CurrentCpu(), last);
  EXPECT_EQ(FakeCpuOfThisThread(), last);
  main_checked.release();
  other.join();
  // The other thread's scope ended; this one's is intact.
  EXPECT_EQ(CurrentCpu(), last);
  EXPECT_NE(g_fake_cpu_users.load(), 0);
}

TEST(FakeCpuTest, OutOfRangeIdThrows) {
  const int n = NumCpus();
  for (const int bad : {-1, n, n + 1, INT_MAX, INT_MIN}) {
    EXPECT_THROW({ ScopedFakeCpu fake(bad); }, std::out_of_range) << "cpu " << bad;
  }
  EXPECT_EQ(FakeCpuOfThisThread(), -1);
  EXPECT_EQ(g_fake_cpu_users.load(), 0);

  // A failed scope leaves an enclosing one in place.
  ScopedFakeCpu fake(0);
  EXPECT_THROW({ ScopedFakeCpu inner(n); }, std::out_of_range);
  EXPECT_EQ(CurrentCpu(), 0);
  EXPECT_EQ(FakeCpuOfThisThread(), 0);
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
