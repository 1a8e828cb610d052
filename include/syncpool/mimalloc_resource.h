// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/mimalloc_resource.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::MimallocResource`, a `std::pmr::memory_resource` over mimalloc,
// PoolResource's default upstream.
//
// mimalloc is loaded at run time with dlopen(RTLD_LOCAL) from libmimalloc.so.2: linking the
// shared library would replace malloc and operator new for the whole process, since the
// library is built to override them. Loaded locally, it serves syncpool's upstream and nothing
// else; the program's malloc stays what it was.
//
// Thread safety: all members are thread-safe. Errors: allocate throws std::bad_alloc when
// mimalloc returns null. Lifetime: the instance is never destroyed.

#ifndef SYNCPOOL_MIMALLOC_RESOURCE_H_
#define SYNCPOOL_MIMALLOC_RESOURCE_H_

#include <cstddef>
#include <memory_resource>

namespace syncpool {

class MimallocResource final : public std::pmr::memory_resource {
 public:
  // MimallocResource::Get()
  //
  // The process's instance, or nullptr when libmimalloc.so.2 cannot be loaded.
  static MimallocResource* Get();

  // MimallocResource::Collect()
  //
  // Asks mimalloc to return free memory to the system (mi_collect), from the calling thread:
  // the free pages of that thread's own heap, blocks other threads freed into it included, and
  // with `force` also the segments of threads that have exited and mimalloc's cache of free
  // segments. Works on any thread, including one that never allocated from mimalloc (it is
  // given a heap first). It cannot reach the heap of another live thread: what a thread
  // allocated goes back to the system only once that thread calls mimalloc again or exits
  // (docs/memory.md).
  void Collect(bool force);

 private:
  struct Api;
  explicit MimallocResource(const Api* api) : api_(api) {}

  void* do_allocate(size_t bytes, size_t alignment) override;
  void do_deallocate(void* p, size_t bytes, size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  const Api* const api_;
};

}  // namespace syncpool

#endif  // SYNCPOOL_MIMALLOC_RESOURCE_H_
