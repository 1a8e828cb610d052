// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Thread slots and the per-thread mode's fence (thread_slots.h).

#include "src/thread_slots.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "src/fork.h"

namespace syncpool {
namespace internal {

__thread uint32_t tls_thread_slot __attribute__((tls_model("initial-exec"))) = 0;

#ifdef SYNCPOOL_RSEQ_TEST_WINDOW
std::atomic<int> g_thread_window_point{-1};
std::atomic<uint32_t> g_thread_window_entered{0};
std::atomic<uint32_t> g_thread_window_go{0};
std::atomic<uint32_t> g_thread_window_left{0};
#endif

namespace {

// The registry: which slots are taken and which caches use them. Never destroyed, so that
// threads exiting during static destruction still find it.
struct Registry {
  std::mutex mu;
  // Free slots (a stack); slots are handed out lowest first, so that few columns are touched.
  std::vector<uint32_t> free_slots;
  std::vector<ThreadSlotUser*> users;
  pthread_key_t key;  // Its value is the thread's slot (nonzero) while it holds one.
};

void OnThreadExit(void* value);

Registry& GetRegistry() {
  static Registry* const registry = [] {
    auto* r = new Registry();
    r->free_slots.reserve(kThreadSlots);
    for (uint32_t slot = kThreadSlots; slot-- > 1;) r->free_slots.push_back(slot);
    if (pthread_key_create(&r->key, &OnThreadExit) != 0) {
      std::fprintf(stderr, "syncpool: pthread_key_create failed\n");
      std::abort();
    }
    return r;
  }();
  return *registry;
}

// At thread exit (the key's destructor): every per-thread cache moves what the thread's column
// holds to its shared layer, then the slot is free. A later destructor of the same thread that
// uses a pool takes a slot again (and is flushed again, pthread keys' destructors run in
// rounds).
void OnThreadExit(void* value) {
  const auto slot = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(value));
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> l(r.mu);
  for (ThreadSlotUser* user : r.users) user->FlushSlot(slot);
  r.free_slots.push_back(slot);
  tls_thread_slot = 0;
}

#if !SYNCPOOL_THREAD_FULL_FENCE
long Membarrier(int cmd, unsigned flags) { return syscall(__NR_membarrier, cmd, flags, 0); }
#endif

// Whether the asymmetric fence can be made, registering for it once.
const char* DecideFence() {
#if SYNCPOOL_THREAD_FULL_FENCE
  return nullptr;
#else
  const long supported = Membarrier(MEMBARRIER_CMD_QUERY, 0);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
    return "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) not supported";
  }
  if (Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) != 0) {
    return "membarrier registration refused";
  }
  return nullptr;
#endif
}

}  // namespace

uint32_t AcquireThreadSlot() {
  if (tls_thread_slot != 0) return tls_thread_slot;
  Registry& r = GetRegistry();
  uint32_t slot;
  {
    std::lock_guard<std::mutex> l(r.mu);
    if (r.free_slots.empty()) return 0;
    slot = r.free_slots.back();
    r.free_slots.pop_back();
  }
  if (pthread_setspecific(r.key, reinterpret_cast<void*>(uintptr_t{slot})) != 0) {
    std::lock_guard<std::mutex> l(r.mu);  // No way to give it back at exit: do without.
    r.free_slots.push_back(slot);
    return 0;
  }
  tls_thread_slot = slot;
  return slot;
}

void RegisterSlotUser(ThreadSlotUser* user) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> l(r.mu);
  r.users.push_back(user);
}

void UnregisterSlotUser(ThreadSlotUser* user) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> l(r.mu);
  r.users.erase(std::find(r.users.begin(), r.users.end(), user));
}

namespace {

// The registry's fork layer (fork.h, rank kThreadSlots).
void LockSlotsForFork() { GetRegistry().mu.lock(); }

void UnlockSlotsAfterFork(bool child) {
  Registry& r = GetRegistry();
  if (child) {
    // Only the forking thread lives on: every other slot is free again (the columns keep
    // their blocks for the next owners or the epochs), and no busy flag may stay set by a
    // thread that does not exist here.
    r.free_slots.clear();
    for (uint32_t slot = kThreadSlots; slot-- > 1;) {
      if (slot != tls_thread_slot) r.free_slots.push_back(slot);
    }
    for (ThreadSlotUser* user : r.users) user->ResetBusyAfterFork();
  }
  r.mu.unlock();
}

ForkLayer slots_fork(ForkRank::kThreadSlots, &LockSlotsForFork, &UnlockSlotsAfterFork);

}  // namespace

bool ThreadFenceUsable(const char** why) {
  static const char* const refused = DecideFence();
  if (refused != nullptr && why != nullptr) *why = refused;
  return refused == nullptr;
}

void FenceAllThreads() {
#if SYNCPOOL_THREAD_FULL_FENCE
  std::atomic_thread_fence(std::memory_order_seq_cst);
#else
  if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0) return;
  std::fprintf(stderr, "syncpool: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed: %s\n",
               std::strerror(errno));
  std::abort();
#endif
}

}  // namespace internal
}  // namespace syncpool
