// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/spinlock.h
// -----------------------------------------------------------------------------
//
// A one-byte test-and-test-and-set lock for the per-CPU caches of the locked path. Not part of
// syncpool's API.
//
// Critical sections under this lock are a handful of loads and stores: no upstream call, no
// allocation and no system call is ever made while it is held, so waiting is short. A waiter
// spins with `pause` and, after a bounded number of tries, yields the CPU so that a holder that
// was preempted can finish.
//
// Memory ordering: Lock() is an acquire, Unlock() a release; everything written inside one
// critical section is visible to the next holder.

#ifndef SYNCPOOL_SRC_SPINLOCK_H_
#define SYNCPOOL_SRC_SPINLOCK_H_

#include <atomic>
#include <cassert>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"

namespace syncpool {
namespace internal {

class ABSL_LOCKABLE SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  // SpinLock::Lock()
  //
  // Acquires the lock; the uncontended case is one atomic exchange.
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if (ABSL_PREDICT_TRUE(!locked_.exchange(true, std::memory_order_acquire))) return;
    LockSlow();
  }

  // SpinLock::AssertHeld()
  //
  // Tells the thread-safety analysis that the caller holds the lock (a remote operation's
  // callback, which Remote() calls under it); with assertions on, checks that someone does.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {
    assert(locked_.load(std::memory_order_relaxed));
  }

  // SpinLock::Unlock()
  void Unlock() ABSL_UNLOCK_FUNCTION() { locked_.store(false, std::memory_order_release); }

 private:
  void LockSlow();

  std::atomic<bool> locked_{false};
};

// Holds a SpinLock for the lifetime of a scope.
class ABSL_SCOPED_LOCKABLE SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    lock_->Lock();
  }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;
  ~SpinLockHolder() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }

 private:
  SpinLock* const lock_;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SPINLOCK_H_
