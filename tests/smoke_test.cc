#include <gtest/gtest.h>
#include <absl/synchronization/mutex.h>
#include <absl/container/flat_hash_map.h>
TEST(X, Y) { absl::Mutex mu; absl::MutexLock l(&mu); absl::flat_hash_map<int,int> m; m[1]=2; EXPECT_EQ(m[1], 2); }
