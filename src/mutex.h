// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/mutex.h
// -----------------------------------------------------------------------------
//
// A mutex for syncpool's slow paths (the sweeper's registry, the debug registry), with the
// thread-safety annotations clang checks. Not installed: the inline paths do not use it.
//
// It wraps std::mutex rather than using absl::Mutex because the Abseil that syncpool links is
// a prebuilt system library: ThreadSanitizer cannot see its lock operations and would report
// every access it guards as a race, while std::mutex goes through pthread, which every
// sanitizer intercepts.

#ifndef SYNCPOOL_SRC_MUTEX_H_
#define SYNCPOOL_SRC_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace syncpool {
namespace internal {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

  // Mutex::AssertHeld()
  //
  // Tells the thread-safety analysis that the caller holds the mutex (an Await() predicate,
  // which runs under it). Checks nothing at run time: std::mutex does not know its owner.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

  // Mutex::Await()
  //
  // Waits on `cv` until `done()` holds, releasing the mutex while blocked.
  // REQUIRES: held by the caller. `done` runs with the mutex held.
  template <typename Predicate>
  void Await(std::condition_variable& cv, Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    cv.wait(lock, done);
    lock.release();
  }

  // Mutex::AwaitWithTimeout()
  //
  // As Await(), but returns after `timeout` at the latest. Returns done().
  template <typename Predicate>
  bool AwaitWithTimeout(std::condition_variable& cv, std::chrono::milliseconds timeout,
                        Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    const bool result = cv.wait_for(lock, timeout, done);
    lock.release();
    return result;
  }

 private:
  std::mutex mu_;
};

// Holds a Mutex for the lifetime of a scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }

 private:
  Mutex* const mu_;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_MUTEX_H_
