// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "churn.h"

#include <condition_variable>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "gtest/gtest.h"
#include "src/mutex.h"
#include "syncpool/stats.h"
#include "pattern.h"

namespace syncpool {
namespace testing {
namespace {

uint64_t* Words(Pool<ChurnObject>::Handle& handle, void* block) {
  return handle ? handle->words : static_cast<uint64_t*>(block);
}

}  // namespace

Churner::Churner(ChurnShared* shared, const ChurnMix& mix, int index)
    : s_(shared), mix_(mix), index_(index), rng_(index + 1), window_(1 + rng_() % mix.max_window) {}

Churner::~Churner() {
  for (Item& item : items_) GiveBack(item);
  s_->pool_gets.fetch_add(pool_gets_);
  s_->pooled_allocations.fetch_add(pooled_allocations_);
  s_->direct_allocations.fetch_add(direct_allocations_);
  s_->dropped.fetch_add(dropped_);
}

bool Churner::Step() {
  if (items_.size() < window_ && (items_.empty() || rng_() % 2 == 0)) {
    items_.emplace_back();
    if (!Take(items_.back())) items_.pop_back();
  } else {
    std::swap(items_[rng_() % items_.size()], items_.back());
    GiveBack(items_.back());
    items_.pop_back();
  }
  if (rng_() % 32 == 0) window_ = 1 + rng_() % mix_.max_window;
  return !s_->failed.load(std::memory_order_relaxed);
}

bool Churner::Fail(const std::string& what) {
  s_->failed.store(true);
  ADD_FAILURE() << "worker " << index_ << ": " << what;
  return false;
}

bool Churner::Take(Item& item) {
  item.tag = (uint64_t{static_cast<uint32_t>(index_)} << 32) | ++sequence_;
  const uint32_t kind = rng_() % 100;
  void* p;
  size_t words;
  if (kind < mix_.object_percent) {
    item.handle = s_->pool->Get();
    ++pool_gets_;
    if (!item.handle) return Fail("Get() returned no object");
    if (item.handle->magic != ChurnObject::kAlive) return Fail("Get() returned a dead object");
    p = item.handle.get();
    words = ChurnObject::kWords;
  } else {
    if (kind < 100 - mix_.direct_percent || mix_.direct.empty()) {
      item.request = mix_.pooled[rng_() % mix_.pooled.size()];
      ++pooled_allocations_;
    } else {
      item.request = mix_.direct[rng_() % mix_.direct.size()];
      ++direct_allocations_;
    }
    const Request& r = item.request;
    item.block = item.tag % 2 == 0 ? s_->resource->allocate(r.bytes, r.alignment)
                                   : s_->resource->Allocate(r.bytes, r.alignment);
    if (!IsAligned(item.block, r.alignment)) {
      Fail("misaligned block of " + std::to_string(r.bytes));
    }
    p = item.block;
    words = r.bytes / 8;
  }
  if (const uint64_t other = s_->held.Acquire(p, item.tag); other != 0) {
    // Leave it alone (and leaked): the other holder owns it.
    item.handle.release().release();
    item.block = nullptr;
    return Fail("handed out while worker " + std::to_string(other >> 32) + " holds it");
  }
  FillPattern(Words(item.handle, item.block), words, item.tag);
  return true;
}

void Churner::GiveBack(Item& item) {
  const void* p = item.handle ? static_cast<const void*>(item.handle.get()) : item.block;
  const size_t words = item.handle ? ChurnObject::kWords : item.request.bytes / 8;
  if (const size_t bad = FirstMismatch(Words(item.handle, item.block), words, item.tag);
      bad != words) {
    Fail("pattern overwritten at word " + std::to_string(bad) + " of " + std::to_string(words) +
         " while held");
  }
  if (!s_->held.Release(p, item.tag)) Fail("held pointer missing from the held set");
  if (item.handle) {
    const uint32_t how = rng_() % 16;
    if (how == 0) {
      ++dropped_;
      item.handle.release().reset();  // Taken out of the pool for good.
    } else if (how < 5) {
      s_->pool->Put(item.handle.release());
    } else {
      item.handle.reset();
    }
  } else if (item.tag % 2 == 0) {
    s_->resource->deallocate(item.block, item.request.bytes, item.request.alignment);
  } else {
    s_->resource->Deallocate(item.block, item.request.bytes, item.request.alignment);
  }
}

void RunWhileSweeping(Sweeper* sweeper, int n, const std::function<void(int)>& body,
                      std::chrono::milliseconds period) {
  internal::Mutex mu;
  std::condition_variable cv;
  int running = n;  // Guarded by mu.
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      body(i);
      internal::MutexLock l(&mu);
      if (--running == 0) cv.notify_one();
    });
  }
  // Sweep from this thread, racing the workers (and a background sweeper, if any).
  mu.Lock();
  while (!mu.AwaitWithTimeout(cv, period,
                              [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return running == 0; })) {
    mu.Unlock();
    sweeper->SweepNow();
    mu.Lock();
  }
  mu.Unlock();
  for (std::thread& t : threads) t.join();
}

void ExpectEveryBlockAccounted(ChurnShared& shared, const TrackingResource& upstream,
                               Sweeper& sweeper, bool no_sequence_ran) {
  EXPECT_FALSE(shared.failed.load());
  EXPECT_EQ(shared.held.size(), 0u);
  const uint64_t constructed = ChurnObject::constructed();
  const uint64_t destroyed = ChurnObject::destroyed();

  const Stats ps = shared.pool->GetStats();
  if (shared.pool->uses_rseq() && !no_sequence_ran) {
    EXPECT_GE(ps.hits + ps.misses, shared.pool_gets.load()) << ps.DebugString();
  } else {
    EXPECT_EQ(ps.hits + ps.misses, shared.pool_gets.load()) << ps.DebugString();
  }
  EXPECT_EQ(constructed, ps.misses) << ps.DebugString();
  EXPECT_EQ(constructed, destroyed + ps.cached_blocks()) << ps.DebugString();
  EXPECT_EQ(destroyed, ps.spills + ps.swept_blocks + shared.dropped.load()) << ps.DebugString();

  const Stats rs = shared.resource->GetStats();
  const uint64_t direct = shared.direct_allocations.load();
  if (shared.resource->uses_rseq() && !no_sequence_ran) {
    EXPECT_GE(rs.hits + rs.misses, shared.pooled_allocations.load()) << rs.DebugString();
  } else {
    EXPECT_EQ(rs.hits + rs.misses, shared.pooled_allocations.load()) << rs.DebugString();
  }
  // Nothing is in use now. Every block that came into use from below the caches (a miss or
  // a refill, from a span or, above 4 KiB, from upstream) went back below (a spill or a
  // sweep) or is cached.
  EXPECT_EQ(rs.misses + rs.refilled, rs.spills + rs.swept_blocks + rs.cached_blocks())
      << rs.DebugString();
  EXPECT_GE(upstream.allocations(), direct) << rs.DebugString();
  // Every block of every span is free in it or cached (span_block_bytes - span_free_bytes of
  // the cache holds span blocks); the rest of what the upstream holds is the cached blocks
  // above 4 KiB, each its own upstream block.
  EXPECT_LE(rs.span_free_bytes, rs.span_block_bytes) << rs.DebugString();
  const uint64_t cached_in_spans = rs.span_block_bytes - rs.span_free_bytes;
  EXPECT_LE(cached_in_spans, rs.cached_bytes()) << rs.DebugString();
  EXPECT_EQ(upstream.live_bytes(), rs.span_bytes + (rs.cached_bytes() - cached_in_spans))
      << rs.DebugString();

  // Two epochs release whatever is cached.
  sweeper.SweepNow();
  sweeper.SweepNow();
  EXPECT_EQ(shared.pool->GetStats().cached_blocks(), 0u);
  EXPECT_EQ(ChurnObject::constructed(), ChurnObject::destroyed());
  const Stats swept = shared.resource->GetStats();
  EXPECT_EQ(swept.cached_blocks(), 0u);
  // Every block of every span came back, so every span went back upstream at the epochs.
  EXPECT_EQ(swept.span_bytes, 0u) << swept.DebugString();
  EXPECT_EQ(swept.span_free_bytes, 0u) << swept.DebugString();
  EXPECT_EQ(upstream.live_blocks(), 0u);
}

void ExpectUpstreamEmpty(const TrackingResource& upstream) {
  EXPECT_EQ(upstream.live_bytes(), 0u);
  EXPECT_EQ(upstream.live_blocks(), 0u);
  EXPECT_TRUE(upstream.errors().empty()) << upstream.errors().front();
}

}  // namespace testing
}  // namespace syncpool
