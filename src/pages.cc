// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <new>

namespace syncpool {
namespace internal {

size_t PageSize() {
  static const size_t page = [] {
    const long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? static_cast<size_t>(size) : size_t{4096};
  }();
  return page;
}

namespace {

char* Map(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<char*>(p);
}

}  // namespace

MappedRegion::MappedRegion(size_t bytes)
    : bytes_((bytes + PageSize() - 1) / PageSize() * PageSize()), base_(Map(bytes_)) {}

MappedRegion::~MappedRegion() { munmap(base_, bytes_); }

size_t DiscardInteriorPages(void* p, size_t size) {
  constexpr size_t kKeptPrefix = 64;  // Room for an allocator's link or header.
  if (size <= kKeptPrefix) return 0;
  const size_t page = PageSize();
  const uintptr_t start = (reinterpret_cast<uintptr_t>(p) + kKeptPrefix + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + size) & ~(page - 1);
  if (end <= start) return 0;
  if (madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) != 0) return 0;
  return end - start;
}

}  // namespace internal
}  // namespace syncpool
