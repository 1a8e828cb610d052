// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The accounting scenario the concurrency tests share (stress_test, rseq_test,
// rseq_disabled_test): worker threads take pool objects and resource blocks and give them back,
// a few held at a time, while sweeps run; every one is checked for a single holder, and at the
// end every object and block is accounted for against the statistics and the upstream.
//
// Protocol: each worker owns a Churner. On taking an object or block, the Churner records it in
// the shared HeldSet under a tag unique to the worker and the acquisition (a pointer already
// there was handed to two holders: a failure) and writes the tag's pattern into it; before
// giving it back it checks the pattern (a changed word means someone else wrote into it) and
// removes it from the HeldSet. The counts of what the workers did are added to ChurnShared when
// each Churner is destroyed; ExpectEveryBlockAccounted() reads them once every worker is joined
// and nothing else touches the caches (a background sweeper stopped).

#ifndef SYNCPOOL_TESTS_CHURN_H_
#define SYNCPOOL_TESTS_CHURN_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"
#include "syncpool/sweeper.h"
#include "counted.h"
#include "held_set.h"
#include "tracking_resource.h"

namespace syncpool {
namespace testing {

// A 256-byte pooled object that counts its constructions and destructions and says whether it
// was destroyed.
struct ChurnObject : Counted<ChurnObject> {
  static constexpr uint64_t kAlive = 0xa11ce0b1ec7a11e5;
  static constexpr uint64_t kDead = 0xdeadb10cdeadb10c;
  static constexpr size_t kWords = 31;
  ~ChurnObject() { magic = kDead; }

  uint64_t magic = kAlive;
  uint64_t words[kWords] = {};
};
static_assert(sizeof(ChurnObject) == 256);

// A request of a resource. Sizes are multiples of 8: blocks are filled in words.
struct Request {
  size_t bytes;
  size_t alignment;
};

// What a Churner takes, out of 100 takes: `object_percent` pool objects, `direct_percent`
// blocks of `direct` (served by the upstream directly: larger than max_block_size, or
// over-aligned), the rest blocks of `pooled`. It holds 1 to `max_window` at once.
struct ChurnMix {
  std::span<const Request> pooled = {};
  std::span<const Request> direct = {};
  uint32_t object_percent = 40;
  uint32_t direct_percent = 0;
  size_t max_window = 8;
};

// What the workers share, and what they did (added up as each Churner ends).
struct ChurnShared {
  Pool<ChurnObject>* pool = nullptr;
  PoolResource* resource = nullptr;
  HeldSet held;
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> pool_gets{0};
  std::atomic<uint64_t> pooled_allocations{0};
  std::atomic<uint64_t> direct_allocations{0};
  std::atomic<uint64_t> dropped{0};  // Pool objects released from the pool and deleted.
};

// One worker's window of held objects and blocks, taken and given back at random. An object
// goes back by Put(), by its handle, or is released from the pool and deleted; a block by
// deallocate() or Deallocate(), as it was taken by allocate() or Allocate().
class Churner {
 public:
  Churner(ChurnShared* shared, const ChurnMix& mix, int index);
  Churner(const Churner&) = delete;
  Churner& operator=(const Churner&) = delete;
  // Gives back everything it holds and adds its counts to the shared ones.
  ~Churner();

  // Churner::Step()
  //
  // Takes or gives back one object or block; false once any worker failed.
  bool Step();

 private:
  struct Item {
    Pool<ChurnObject>::Handle handle;  // A pool object, or empty for a resource block.
    void* block = nullptr;
    Request request = {};
    uint64_t tag = 0;
  };

  bool Fail(const std::string& what);
  bool Take(Item& item);
  void GiveBack(Item& item);

  ChurnShared* const s_;
  const ChurnMix mix_;
  const int index_;
  std::mt19937_64 rng_;
  std::vector<Item> items_;
  size_t window_;
  uint64_t sequence_ = 0;
  uint64_t pool_gets_ = 0;
  uint64_t pooled_allocations_ = 0;
  uint64_t direct_allocations_ = 0;
  uint64_t dropped_ = 0;
};

// RunWhileSweeping()
//
// Runs `body(i)` for i in [0, n) on n threads while the calling thread calls
// sweeper->SweepNow() every `period`, until every body has returned; joins them.
void RunWhileSweeping(Sweeper* sweeper, int n, const std::function<void(int)>& body,
                      std::chrono::milliseconds period = std::chrono::milliseconds(1));

// ExpectEveryBlockAccounted()
//
// Checks what the workers did against the statistics of `shared`'s pool and resource and
// against `upstream` (the resource's upstream): every object made on a miss and either cached
// or destroyed by a spill, a sweep or a drop; every block obtained upstream on a miss, a refill
// or directly, and either cached or returned by a spill, a sweep or a direct deallocation. Then
// two epochs of `sweeper` must release everything. In the rseq mode a restarted pop may count
// its hit twice (stats.h): the hits are a bound there, unless `no_sequence_ran` (every worker
// used a fake CPU id throughout, which turns the sequences off for the whole process: every
// operation went through the locked slow paths, which count exactly). REQUIRES: the workers
// are joined and no other thread uses the caches (a background sweeper stopped).
void ExpectEveryBlockAccounted(ChurnShared& shared, const TrackingResource& upstream,
                               Sweeper& sweeper, bool no_sequence_ran = false);

// ExpectUpstreamEmpty()
//
// Once the pool and the resource over `upstream` are destroyed: it holds nothing and saw no
// mismatched deallocation.
void ExpectUpstreamEmpty(const TrackingResource& upstream);

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_CHURN_H_
