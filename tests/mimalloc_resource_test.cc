// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Tests of MimallocResource (mimalloc loaded locally, PoolResource's default upstream) and of
// DefaultUpstream().

#include "syncpool/mimalloc_resource.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <new>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "syncpool/pool_resource.h"

namespace syncpool {
namespace {

TEST(MimallocResourceTest, LoadsAndReturnsTheSameInstance) {
  // The project's scripts install libmimalloc-dev, so the library must load here.
  ASSERT_NE(MimallocResource::Get(), nullptr);
  EXPECT_EQ(MimallocResource::Get(), MimallocResource::Get());
}

TEST(MimallocResourceTest, ServesAlignedWritableBlocks) {
  MimallocResource* mr = MimallocResource::Get();
  ASSERT_NE(mr, nullptr);
  std::vector<std::pair<void*, std::pair<size_t, size_t>>> blocks;
  // 256 to 1024 bytes at alignments 256 to 1024: mimalloc 2.0.9's mi_malloc_aligned() got
  // these wrong (half the alignment).
  for (size_t alignment = 1; alignment <= 4096; alignment *= 2) {
    for (const size_t bytes : {size_t{0}, size_t{1}, size_t{100}, size_t{256}, size_t{512},
                               size_t{1024}, size_t{4096}, size_t{70000}}) {
      void* p = mr->allocate(bytes, alignment);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << bytes << "/" << alignment;
      std::memset(p, 0x5a, bytes);
      blocks.push_back({p, {bytes, alignment}});
    }
  }
  for (auto& [p, shape] : blocks) mr->deallocate(p, shape.first, shape.second);
  mr->Collect(/*force=*/true);
}

TEST(MimallocResourceTest, ExhaustionThrowsBadAlloc) {
  MimallocResource* mr = MimallocResource::Get();
  ASSERT_NE(mr, nullptr);
  EXPECT_THROW(static_cast<void>(mr->allocate(SIZE_MAX / 2, 16)), std::bad_alloc);
}

TEST(MimallocResourceTest, EqualOnlyToItself) {
  MimallocResource* mr = MimallocResource::Get();
  ASSERT_NE(mr, nullptr);
  EXPECT_TRUE(mr->is_equal(*mr));
  EXPECT_FALSE(mr->is_equal(*std::pmr::new_delete_resource()));
}

// Loaded with RTLD_LOCAL: mimalloc's symbols stay out of the global scope, so the program's
// malloc and operator new are not replaced.
TEST(MimallocResourceTest, DoesNotReplaceTheProgramsMalloc) {
  ASSERT_NE(MimallocResource::Get(), nullptr);
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "mi_malloc"), nullptr);
  void* mimalloc = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(mimalloc, nullptr);  // Loaded by MimallocResource::Get().
  void* its_malloc = dlsym(mimalloc, "malloc");
  ASSERT_NE(its_malloc, nullptr);  // The library does export a malloc of its own...
  EXPECT_NE(dlsym(RTLD_DEFAULT, "malloc"), its_malloc);  // ...which the program does not use.
  dlclose(mimalloc);
}

// The sanitizers are detected by pool_resource.h (no -DSYNCPOOL_SANITIZER in .bazelrc).
TEST(DefaultUpstreamTest, IsMimallocUnlessASanitizerMustSeeAllocations) {
#if defined(ABSL_HAVE_ADDRESS_SANITIZER) || defined(ABSL_HAVE_THREAD_SANITIZER)
  EXPECT_EQ(DefaultUpstream(), std::pmr::new_delete_resource());
#else
  EXPECT_EQ(DefaultUpstream(), MimallocResource::Get());
#endif
}

}  // namespace
}  // namespace syncpool
