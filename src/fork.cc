// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The fork registry and its pthread_atfork handlers (fork.h has the protocol).

#include "src/fork.h"

#include <pthread.h>

#include <mutex>
#include <system_error>

namespace syncpool {
namespace internal {

std::atomic<uint64_t> g_fork_generation{0};

namespace {

// The layers, newest first: a list that only grows (layers are never destroyed), so a handler
// may walk it without a lock. Constant-initialized, so it exists before any layer's static
// initializer runs.
constinit std::atomic<ForkLayer*> g_layers{nullptr};

constexpr int kRanks = static_cast<int>(ForkRank::kSweepers) + 1;

}  // namespace

struct ForkRegistryAccess {
  static void Push(ForkLayer* layer) {
    ForkLayer* head = g_layers.load(std::memory_order_relaxed);
    do {
      layer->next_ = head;
    } while (!g_layers.compare_exchange_weak(head, layer, std::memory_order_release,
                                             std::memory_order_relaxed));
  }

  // Calls `f` on every layer of `rank`, in the order they joined (or its reverse). The list is
  // newest first and short (one entry per layer), so a recursion walks it oldest first.
  template <typename F>
  static void ForRank(ForkLayer* layer, ForkRank rank, bool oldest_first, F f) {
    if (layer == nullptr) return;
    if (!oldest_first && layer->rank_ == rank) f(*layer);
    ForRank(layer->next_, rank, oldest_first, f);
    if (oldest_first && layer->rank_ == rank) f(*layer);
  }

  // The prepare handler: locks every layer, by rank, and remembers the list it locked.
  static void Prepare() {
    locked = g_layers.load(std::memory_order_acquire);
    for (int rank = 0; rank < kRanks; ++rank) {
      ForRank(locked, static_cast<ForkRank>(rank), /*oldest_first=*/true,
              [](ForkLayer& l) { l.lock_(); });
    }
  }

  // The parent's and the child's handlers: unlock what Prepare() locked, in the reverse order.
  // A layer that joined after Prepare() read the list was not locked; it is in front of
  // `locked` and not visited.
  static void Release(bool child) {
    if (child) g_fork_generation.fetch_add(1, std::memory_order_relaxed);
    for (int rank = kRanks; rank-- > 0;) {
      ForRank(locked, static_cast<ForkRank>(rank), /*oldest_first=*/false,
              [child](ForkLayer& l) { l.unlock_(child); });
    }
  }

  // Written by Prepare() and read by Release() on the forking thread. glibc runs one fork's
  // handlers at a time (it holds its own lock from the prepare handlers to the parent's and
  // the child's), so two forks never share it.
  static inline ForkLayer* locked = nullptr;
};

ForkLayer::ForkLayer(ForkRank rank, void (*lock)(), void (*unlock)(bool child))
    : rank_(rank), lock_(lock), unlock_(unlock) {
  ForkRegistryAccess::Push(this);
}

namespace {

void PrepareFork() { ForkRegistryAccess::Prepare(); }
void ParentAfterFork() { ForkRegistryAccess::Release(/*child=*/false); }
void ChildAfterFork() { ForkRegistryAccess::Release(/*child=*/true); }

}  // namespace

void InstallForkHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Fails only for want of memory; the exception leaves the flag clear, so the next
    // Sweeper tries again.
    if (const int err = pthread_atfork(&PrepareFork, &ParentAfterFork, &ChildAfterFork)) {
      throw std::system_error(err, std::generic_category(), "syncpool: pthread_atfork");
    }
  });
}

}  // namespace internal
}  // namespace syncpool
