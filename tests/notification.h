// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// A one-shot event for ordering threads in tests, on std::mutex (which ThreadSanitizer sees,
// unlike the prebuilt absl::Notification).

#ifndef SYNCPOOL_TESTS_NOTIFICATION_H_
#define SYNCPOOL_TESTS_NOTIFICATION_H_

#include <condition_variable>

#include "src/mutex.h"

namespace syncpool {
namespace testing {

class Notification {
 public:
  void Notify() {
    internal::MutexLock l(&mu_);
    notified_ = true;
    cv_.notify_all();
  }

  void WaitForNotification() {
    internal::MutexLock l(&mu_);
    mu_.Await(cv_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return notified_; });
  }

  bool HasBeenNotified() {
    internal::MutexLock l(&mu_);
    return notified_;
  }

 private:
  internal::Mutex mu_;
  std::condition_variable cv_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace testing
}  // namespace syncpool

#endif  // SYNCPOOL_TESTS_NOTIFICATION_H_
