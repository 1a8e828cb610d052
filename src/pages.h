// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/pages.h
// -----------------------------------------------------------------------------
//
// Pages from and back to the operating system: giving the memory of a block back before the
// block goes back to its upstream resource (DiscardInteriorPages()), and regions mapped for the
// caches' stacks and counters (MappedRegion). Not part of syncpool's API.
//
// Why: giving a block back to an allocator does not give its memory back to the system.
// mimalloc returns a page only when the thread that allocated it calls mimalloc again, and
// blocks freed by another thread (a sweeper's, a consumer's) wait for that thread too; glibc
// keeps freed memory in its arenas. A thread that went idle after a burst never calls again,
// so the resident set stays at the peak (measured by bench/burst.cc, docs/memory.md). Telling
// the kernel that the block's whole pages are no longer needed (madvise(MADV_DONTNEED))
// releases them at once, whatever the allocator does with the block afterwards: the pages
// read as zeros when touched again, which a freed block's contents may.
//
// Only the pages entirely inside the block, past its first 64 bytes, are discarded: an
// allocator may keep a free-list link or a header in the first bytes of a freed block (glibc,
// mimalloc, jemalloc and tcmalloc keep theirs there or outside the block), and the discard
// happens before the block is handed back, so whatever the allocator then writes stays.

#ifndef SYNCPOOL_SRC_PAGES_H_
#define SYNCPOOL_SRC_PAGES_H_

#include <cstddef>

namespace syncpool {
namespace internal {

// DiscardInteriorPages()
//
// Discards the whole pages of [p + 64, p + size) and returns how many bytes that was (0 when
// none fits, or where the system refuses). REQUIRES: nobody reads the block's contents again.
size_t DiscardInteriorPages(void* p, size_t size);

// PageSize()
size_t PageSize();

// MappedRegion
//
// Anonymous read-write pages, zero-filled on first touch (so what is never touched costs no
// memory), unmapped when the object goes. Sizes are rounded up to whole pages.
class MappedRegion {
 public:
  // Throws std::bad_alloc when the pages cannot be mapped. REQUIRES: bytes > 0.
  explicit MappedRegion(size_t bytes);
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;
  ~MappedRegion();

  char* base() const { return base_; }

 private:
  const size_t bytes_;
  char* const base_;
};

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_PAGES_H_
