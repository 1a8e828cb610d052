// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/internal/pages.h
// -----------------------------------------------------------------------------
//
// Giving the memory of a block back to the operating system before the block goes back to its
// upstream resource. Not part of syncpool's API.
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

#ifndef SYNCPOOL_INTERNAL_PAGES_H_
#define SYNCPOOL_INTERNAL_PAGES_H_

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

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_INTERNAL_PAGES_H_
