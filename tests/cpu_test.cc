// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of CPU identity: CurrentCpu() stays in [0, NumCpus()) and follows the thread when it is
// pinned, the rseq area it reads (glibc's, or syncpool's own where glibc has none) is always one
// that the restartable sequences may write, and the ScopedFakeCpu seam overrides it for the
// calling thread only.

// RseqAreaTest swaps g_rseq_area_offset for one test: this file sees it writable (cpu.h).
#define SYNCPOOL_RSEQ_AREA_OFFSET_WRITABLE 1

#include "src/cpu.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <semaphore>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "syncpool/internal/percpu_rseq.h"
#include "src/current_cpu.h"
#include "src/fake_cpu.h"
#include "cpu_affinity.h"

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
  const std::vector<int> allowed = ::syncpool::testing::AllowedCpus();
  ASSERT_FALSE(allowed.empty());
  int pinned = 0;
  for (const int cpu : allowed) {
    ASSERT_LT(cpu, NumCpus());
    std::thread([&, cpu] {
      if (!::syncpool::testing::SetAffinity({cpu})) return;
      ++pinned;
      for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(CurrentCpu(), cpu);
        EXPECT_EQ(RealCurrentCpu(), cpu);
        EXPECT_EQ(SchedCurrentCpu(), cpu);
#if SYNCPOOL_HAVE_GLIBC_RSEQ
        if (RseqRegistered()) {
          EXPECT_EQ(RseqCpuId(), cpu);
        }
#endif
        std::this_thread::yield();
      }
    }).join();
  }
  if (pinned == 0) GTEST_SKIP() << "sched_setaffinity is not permitted here";
}

#if SYNCPOOL_HAVE_GLIBC_RSEQ
// The `cpu_id` of the area at `offset` from the calling thread's thread pointer.
int32_t CpuIdAt(ptrdiff_t offset) {
  const char* tp = static_cast<const char*>(__builtin_thread_pointer());
  return *reinterpret_cast<const volatile int32_t*>(tp + offset + kRseqCpuIdOffset);
}
#endif

// The ELF constructor set the area before main(); later calls, from any thread, change nothing.
TEST(RseqAreaTest, InitRseqAreaRanBeforeMainAndIsIdempotent) {
#if SYNCPOOL_HAVE_GLIBC_RSEQ
  const ptrdiff_t offset = g_rseq_area_offset;
  const bool registered = RseqRegistered();
  EXPECT_NE(offset, 0);  // 0 would be the thread control block.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([] { InitRseqArea(); });
  InitRseqArea();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(g_rseq_area_offset, offset);
  EXPECT_EQ(RseqRegistered(), registered);
  EXPECT_EQ(RseqAvailable(), registered);
  // syncpool's own area only where glibc has none, and then nothing is registered.
  if (offset == UnregisteredRseqAreaOffset()) {
    EXPECT_FALSE(registered);
  }
#else
  InitRseqArea();
  EXPECT_FALSE(RseqRegistered());
  EXPECT_FALSE(RseqAvailable());
#endif
}

#if SYNCPOOL_HAVE_GLIBC_RSEQ
// glibc's area when it registered one: it holds the CPU the thread last ran on, in every thread.
// Otherwise the area (glibc's unregistered one, or syncpool's own) reads a negative id.
TEST(RseqAreaTest, TheAreaHoldsTheCpuExactlyWhenRegistered) {
  const int n = NumCpus();
  auto probe = [n] {
    const int cpu = RseqCpuId();
    if (RseqRegistered()) {
      EXPECT_GE(cpu, 0);
      EXPECT_LT(cpu, n);
    } else {
      EXPECT_LT(cpu, 0);
    }
  };
  probe();
  std::thread(probe).join();
}

// syncpool's own area, for a glibc without one: at the same offset in every thread, 32-byte
// aligned, cpu_id RSEQ_CPU_ID_REGISTRATION_FAILED (-2), which fails every sequence's CPU bound.
TEST(RseqAreaTest, TheUnregisteredAreaIsTheSameInEveryThreadAndFailsEveryCpu) {
  const ptrdiff_t offset = UnregisteredRseqAreaOffset();
  EXPECT_NE(offset, 0);
  auto check = [offset] {
    EXPECT_EQ(UnregisteredRseqAreaOffset(), offset);
    const char* tp = static_cast<const char*>(__builtin_thread_pointer());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(tp + offset) % 32, 0u);
    EXPECT_EQ(CpuIdAt(offset), -2);
  };
  check();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(check);
  for (std::thread& t : threads) t.join();
}
#endif

#if SYNCPOOL_RSEQ_FAST_PATH
// Every sequence, pointed at syncpool's own area (as on a glibc without one), stores its
// descriptor into that area's rseq_cs, fails its CPU bound, and touches nothing of the row. The
// offset is swapped for this thread's test only: no other thread runs a sequence here.
TEST(RseqAreaTest, SequencesOnTheUnregisteredAreaFailWithoutTouchingTheRow) {
  const ptrdiff_t saved = g_rseq_area_offset;
  const ptrdiff_t own = UnregisteredRseqAreaOffset();
  char* const tp = static_cast<char*>(__builtin_thread_pointer());
  auto* const rseq_cs = reinterpret_cast<volatile uint64_t*>(tp + own + kRseqCsOffset);
  *rseq_cs = 0;
  const size_t row_bytes = static_cast<size_t>(NumCpus()) << kClassStackShift;
  std::vector<char> row(row_bytes, 0);
  int block = 0;
  const ptrdiff_t saved_id = g_rseq_id_offset;
  g_rseq_area_offset = own;
  g_rseq_id_offset = own + kRseqCpuIdOffset;
  const bool pushed = RseqPush(row.data(), &block);
  void* const popped = RseqPopPrimary(row.data());
  const bool counted = RseqCountMiss(row.data());
  void* batch[2] = {&block, &block};
  const uint32_t pushed_batch = RseqPushBatch(row.data(), batch, 2);
  const uint32_t popped_batch = RseqPopBatchToMove(row.data(), batch, 2);
  g_rseq_area_offset = saved;
  g_rseq_id_offset = saved_id;
  EXPECT_FALSE(pushed);
  EXPECT_EQ(popped, nullptr);
  EXPECT_FALSE(counted);
  EXPECT_EQ(pushed_batch, 0u);
  EXPECT_EQ(popped_batch, 0u);
  EXPECT_EQ(batch[0], &block);
  EXPECT_NE(*rseq_cs, 0u);  // The sequences armed their descriptor there.
  EXPECT_EQ(CpuIdAt(own), -2);
  EXPECT_EQ(std::count(row.begin(), row.end(), 0), static_cast<ptrdiff_t>(row_bytes));
}
#endif

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
