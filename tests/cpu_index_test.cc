// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// What the rseq caches index their columns by (SYNCPOOL_CPU_ID; percpu_rseq.h): the kernel's
// concurrency id (mm_cid) where it publishes one, the CPU id otherwise. Run twice: as
// cpu_index_test (auto: concurrency ids on a kernel with mm_cid) and as cpu_index_test_cpuid
// (SYNCPOOL_CPU_ID=cpu). Each test checks what its index promises:
//   - one thread hopping over every CPU it may use: one column by concurrency id, one per CPU
//     by CPU id;
//   - T threads hopping over more than T CPUs: at most T columns by concurrency id;
//   - threads that come one after another on one CPU reuse one column (the same concurrency id,
//     the same CPU), and each finds what the one before left in it.
// The process runs no thread but the test's (the sweeper has none), so that the concurrency
// ids the kernel hands out are bounded by the test's threads.

#include <sched.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "src/cpu.h"
#include "syncpool/internal/percpu_rseq.h"
#include "syncpool/options.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"
#include "cpu_affinity.h"
#include "tracking_resource.h"

namespace syncpool {
namespace {

using ::syncpool::testing::AllowedCpus;
using ::syncpool::testing::PinTo;
using ::syncpool::testing::ScopedAffinity;
using ::syncpool::testing::TrackingResource;

constexpr size_t kBlockBytes = 1024;
constexpr int kBlocksPerVisit = 8;

class CpuIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!internal::RseqUsable()) GTEST_SKIP() << "the rseq caches are not in use here";
    cpus_ = AllowedCpus();
    Options options;
    options.sweeper = &sweeper_;
    options.debug_checks = false;  // Keep the rseq caches.
    options.mode = CacheMode::kPerCpu;
    resource_ = std::make_unique<PoolResource>(options, &upstream_);
    ASSERT_TRUE(resource_->uses_rseq());
  }

  static bool ByConcurrencyId() { return internal::RseqIndexedByConcurrencyId(); }

  // Allocates kBlocksPerVisit blocks and gives them back: the column of the calling thread
  // (where it runs now) gets them.
  void Visit() {
    void* blocks[kBlocksPerVisit];
    for (void*& b : blocks) b = resource_->allocate(kBlockBytes);
    for (void* b : blocks) resource_->deallocate(b, kBlockBytes);
  }

  // Pins the calling thread to each allowed CPU in turn, `rounds` times over, visiting the
  // pool on each. Returns the number of pins that failed.
  int Hop(int rounds) {
    int failures = 0;
    for (int r = 0; r < rounds; ++r) {
      for (int cpu : cpus_) {
        if (!PinTo(cpu)) {
          ++failures;
          continue;
        }
        Visit();
      }
    }
    return failures;
  }

  std::vector<int> cpus_;
  Sweeper sweeper_{Sweeper::Options::Manual()};
  TrackingResource upstream_;
  std::unique_ptr<PoolResource> resource_;
};

TEST_F(CpuIndexTest, TheIndexIsTheOneChosenAndStatsSayWhich) {
  const std::string reason = resource_->GetStats().mode_reason;
  if (ByConcurrencyId()) {
    EXPECT_TRUE(internal::KernelPublishesMmCid());
    EXPECT_NE(reason.find("concurrency id (mm_cid)"), std::string::npos) << reason;
  } else {
    EXPECT_NE(reason.find("columns by CPU id"), std::string::npos) << reason;
  }
}

TEST_F(CpuIndexTest, OneThreadHoppingOverEveryCpu) {
  if (cpus_.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask";
  ScopedAffinity restore;
  ASSERT_EQ(Hop(/*rounds=*/3), 0);
  const Stats stats = resource_->GetStats();
  if (ByConcurrencyId()) {
    EXPECT_EQ(stats.caches, 1u) << "one thread, one concurrency id";
  } else {
    EXPECT_EQ(stats.caches, cpus_.size()) << "one column per CPU visited";
  }
  EXPECT_EQ(stats.in_use_bytes, 0u);
}

TEST_F(CpuIndexTest, FewerThreadsThanCpusUseAtMostOneColumnEach) {
  if (cpus_.size() < 2) GTEST_SKIP() << "needs two CPUs in the affinity mask";
  // T threads in all, this one included: the process has no other.
  const int threads = static_cast<int>(cpus_.size()) - 1;
  std::atomic<int> failures{0};
  auto work = [&] {
    ScopedAffinity restore;
    failures.fetch_add(Hop(/*rounds=*/20));
  };
  std::vector<std::thread> others;
  for (int t = 1; t < threads; ++t) others.emplace_back(work);
  work();
  for (std::thread& t : others) t.join();
  ASSERT_EQ(failures.load(), 0);
  const Stats stats = resource_->GetStats();
  if (ByConcurrencyId()) {
    EXPECT_LE(stats.caches, static_cast<uint64_t>(threads));
  } else {
    EXPECT_EQ(stats.caches, cpus_.size());
  }
  EXPECT_EQ(stats.in_use_bytes, 0u);
}

TEST_F(CpuIndexTest, AColumnReusedByALaterThreadStillHoldsWhatTheLastOneLeft) {
  ScopedAffinity restore;
  ASSERT_TRUE(PinTo(cpus_.front()));  // The threads below inherit it.
  std::thread([this] { Visit(); }).join();
  const Stats first = resource_->GetStats();
  ASSERT_GE(first.cached_blocks(), uint64_t{kBlocksPerVisit});
  constexpr int kLater = 8;
  for (int t = 0; t < kLater; ++t) std::thread([this] { Visit(); }).join();
  const Stats last = resource_->GetStats();
  // Every later thread found the first one's blocks in its column: no further miss, and
  // nothing more taken from upstream.
  EXPECT_EQ(last.caches, 1u);
  EXPECT_EQ(last.misses, first.misses);
  EXPECT_EQ(last.hits, first.hits + uint64_t{kLater} * kBlocksPerVisit);
  EXPECT_EQ(last.upstream_bytes, first.upstream_bytes);
  EXPECT_EQ(last.cached_blocks(), first.cached_blocks());
}

}  // namespace
}  // namespace syncpool
