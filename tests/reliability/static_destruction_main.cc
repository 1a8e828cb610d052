// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Static destruction order: a program whose static objects use pools from their destructors,
// after main returns. static_destruction_test.sh runs it in each mode and checks that it exits
// with status 0 and that the destructors ran (they print markers on stderr).
//
// What the library promises (sweeper.h, pool_resource.h): PoolResource::Default() and
// Sweeper::Default() are never destroyed and stay usable from static destructors; the default
// sweeper's thread is stopped and joined by an atexit handler registered when the default
// sweeper is first used, after which SweepNow() still works and pools and resources can still
// be created, used and destroyed (they never start the thread again). A user's own static
// Pool or PoolResource follows the ordinary C++ rules: it may be destroyed before another
// static's destructor runs, which must then not use it.
//
// Modes (argv[1]):
//   after_stop         A static constructed before the first use of syncpool, so destroyed
//                      after the default sweeper's thread was stopped. Its destructor uses
//                      PoolResource::Default(), pmr containers over it, PoolAllocator, a new
//                      Pool<T> and a new PoolResource (with the default sweeper), and
//                      SweepNow(), and checks that the thread stays stopped. User statics (a
//                      Pool and a PoolResource holding cached memory) constructed after the
//                      first use are destroyed before the thread stops, while it may be
//                      sweeping them.
//   before_stop        A static constructed after the first use of syncpool, so destroyed while
//                      the default sweeper's thread still runs; its destructor does the same,
//                      SweepNow() included, concurrently with the thread.
//   first_use_at_exit  Nothing uses syncpool until a static's destructor does: the default
//                      sweeper is created, and its thread started, during exit; the handler
//                      that stops it, registered during exit too, still runs (checked by a
//                      handler registered before it, which runs after it).
//
// A failed check prints "FAILED: ..." and ends the process with status 3 at once: after main
// returns no test framework can report it.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_allocator.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace {

using ::syncpool::Pool;
using ::syncpool::PoolResource;
using ::syncpool::Sweeper;

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "FAILED: %s\n", what);
  std::_Exit(3);
}

// Uses the library the way a destructor at exit might: the default resource (pooled, above
// max_block_size, over-aligned), containers over it, PoolAllocator, and a Pool and a
// PoolResource of its own, created and destroyed here.
void UsePools() {
  PoolResource& resource = PoolResource::Default();
  // 256 bytes aligned to 256 and 1024 to 512: the default upstream outside sanitizer builds,
  // mimalloc 2.0.9, gave such blocks half their alignment until MimallocResource called
  // mi_malloc_aligned_at.
  const std::pair<size_t, size_t> requests[] = {{1, 1},       {64, 16},     {1000, 64},
                                                {100000, 16}, {300000, 16}, {100, 128},
                                                {256, 256},   {1024, 512},  {4096, 4096}};
  for (int round = 0; round < 2; ++round) {
    std::vector<void*> blocks;
    for (const auto& [bytes, alignment] : requests) {
      void* p = resource.allocate(bytes, alignment);
      Check(reinterpret_cast<uintptr_t>(p) % alignment == 0, "a block is aligned");
      std::memset(p, 0x5a, bytes);
      blocks.push_back(p);
    }
    for (size_t i = 0; i < blocks.size(); ++i) {
      resource.deallocate(blocks[i], requests[i].first, requests[i].second);
    }
  }
  {
    std::pmr::vector<std::pmr::string> lines(&resource);
    for (int i = 0; i < 100; ++i) lines.emplace_back(static_cast<size_t>(30 + i), 'x');
    Check(lines.back().size() == 129, "a pmr container over Default() works");
  }
  {
    syncpool::ScopedDefaultResource use_pool;
    std::pmr::vector<int> numbers(5000, 7);
    Check(numbers[4999] == 7, "a pmr container over the default resource works");
  }
  {
    std::vector<int, syncpool::PoolAllocator<int>> numbers(3000, 1);
    Check(numbers.size() == 3000, "PoolAllocator over Default() works");
  }
  {
    Pool<std::string> pool([] { return std::make_unique<std::string>(64, 'p'); },
                           [](std::string& s) { s.assign(64, 'p'); });
    std::vector<Pool<std::string>::Handle> handles;
    for (int i = 0; i < 10; ++i) handles.push_back(pool.Get());
    Check(handles.back() && handles.back()->size() == 64, "a new Pool works");
    handles.clear();
    Pool<std::string>::Handle again = pool.Get();
    Check(again && again->size() == 64, "a new Pool serves objects put back");
  }
  {
    PoolResource mine;
    for (int i = 0; i < 3; ++i) {
      void* p = mine.allocate(128);
      std::memset(p, 0x11, 128);
      mine.deallocate(p, 128);
    }
    Check(mine.GetStats().misses >= 1, "a new PoolResource serves blocks");
  }
  const syncpool::Stats stats = resource.GetStats();
  Check(stats.hits + stats.misses > 0, "Default() counts what it served");
}

// Sweeps once on the calling thread and checks that the epoch ran.
void SweepOnce() {
  Sweeper& sweeper = Sweeper::Default();
  const uint64_t before = sweeper.epochs();
  sweeper.SweepNow();
  Check(sweeper.epochs() > before, "SweepNow() ran an epoch");
}

enum class When { kAfterStop, kBeforeStop, kFirstUse };

// A static object whose destructor uses pools after main returned.
class Witness {
 public:
  explicit Witness(When when) : when_(when) {}
  Witness(const Witness&) = delete;
  Witness& operator=(const Witness&) = delete;

  ~Witness() {
    switch (when_) {
      case When::kAfterStop:
        Check(!Sweeper::Default().thread_running(),
              "the default sweeper's thread is stopped before this destructor");
        UsePools();
        SweepOnce();
        PoolResource::Default().Trim();
        Check(PoolResource::Default().GetStats().cached_blocks() == 0, "Trim() empties Default()");
        UsePools();
        Check(!Sweeper::Default().thread_running(), "no new pool restarts the thread");
        std::fprintf(stderr, "static destructor after the sweeper stopped: pools usable\n");
        break;
      case When::kBeforeStop:
        Check(Sweeper::Default().thread_running(),
              "the default sweeper's thread still runs in this destructor");
        UsePools();
        SweepOnce();  // Serialized with the thread's sweeps.
        UsePools();
        std::fprintf(stderr, "static destructor while the sweeper runs: pools usable\n");
        break;
      case When::kFirstUse:
        // Registered before the default sweeper's own handler, so it runs after it.
        std::atexit(&CheckStoppedAtExit);
        UsePools();  // Creates the default sweeper and starts its thread, during exit.
        Check(Sweeper::Default().thread_running(), "the first use at exit starts the thread");
        std::fprintf(stderr, "static destructor, first use of syncpool: pools usable\n");
        break;
    }
  }

 private:
  static void CheckStoppedAtExit() {
    Check(!Sweeper::Default().thread_running(),
          "the thread started during exit is stopped by the handler registered then");
    UsePools();
    std::fprintf(stderr, "exit handler after the sweeper stopped: pools usable\n");
  }

  const When when_;
};

// A user's static pool and resource, first used (so constructed) in main: destroyed during
// exit before the sweeper's thread stops, with objects and blocks cached.
Pool<std::string>& UserPool() {
  static Pool<std::string> pool([] { return std::make_unique<std::string>(100, 'u'); });
  return pool;
}
PoolResource& UserResource() {
  static PoolResource resource;
  return resource;
}

// Fills the user's statics' caches.
void UseUserStatics() {
  std::vector<Pool<std::string>::Handle> handles;
  for (int i = 0; i < 20; ++i) handles.push_back(UserPool().Get());
  handles.clear();
  std::vector<void*> blocks;
  for (int i = 0; i < 20; ++i) blocks.push_back(UserResource().allocate(200));
  for (void* p : blocks) UserResource().deallocate(p, 200);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode == "after_stop") {
    static Witness witness(When::kAfterStop);  // Before any use of syncpool.
    UsePools();
    UseUserStatics();
    Check(Sweeper::Default().thread_running(), "the first use started the default sweeper");
  } else if (mode == "before_stop") {
    UsePools();
    UseUserStatics();
    Check(Sweeper::Default().thread_running(), "the first use started the default sweeper");
    static Witness witness(When::kBeforeStop);  // After the first use.
  } else if (mode == "first_use_at_exit") {
    static Witness witness(When::kFirstUse);
  } else {
    std::fprintf(stderr, "usage: %s after_stop|before_stop|first_use_at_exit\n", argv[0]);
    return 2;
  }
  std::fprintf(stderr, "main returns\n");
  return 0;
}
