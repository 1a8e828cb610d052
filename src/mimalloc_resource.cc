// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// mimalloc, loaded with dlopen(RTLD_LOCAL) so that it serves syncpool alone (see the header).

#include "syncpool/mimalloc_resource.h"

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <new>

namespace syncpool {

struct MimallocResource::Api {
  void* (*malloc)(size_t);
  void* (*malloc_aligned_at)(size_t, size_t, size_t);
  void (*free)(void*);
  void (*collect)(bool);
  void (*thread_init)();  // Null when the library lacks it: Collect() then skips it.
};

namespace {

// Whether mi_malloc alone guarantees `alignment` for `bytes`. Its blocks come in sizes that
// are multiples of 8 bytes, so every block is 8-aligned, but a block of an odd number of words
// (24, 40, 56 bytes) is only 8-aligned; blocks whose size is a multiple of 16 are 16-aligned.
// Anything else goes through mi_malloc_aligned_at (see do_allocate()).
// Alignments up to this are first tried with plain mi_malloc (see do_allocate()).
constexpr size_t kTryMallocAlignment = 64;

bool MallocSuffices(size_t bytes, size_t alignment) {
  return alignment <= 8 || (alignment <= 16 && bytes != 0 && bytes % 16 == 0);
}

template <typename F>
bool Lookup(void* library, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(library, name));
  return *out != nullptr;
}

}  // namespace

MimallocResource* MimallocResource::Get() {
  static MimallocResource* const instance = []() -> MimallocResource* {
    void* library = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return nullptr;
    auto* api = new Api();
    if (!Lookup(library, "mi_malloc", &api->malloc) ||
        !Lookup(library, "mi_malloc_aligned_at", &api->malloc_aligned_at) ||
        !Lookup(library, "mi_free", &api->free) || !Lookup(library, "mi_collect", &api->collect)) {
      delete api;
      return nullptr;
    }
    Lookup(library, "mi_thread_init", &api->thread_init);
    return new MimallocResource(api);
  }();
  return instance;
}

void MimallocResource::Collect(bool force) {
  // mi_collect() works from the calling thread's heap and returns at once on a thread that has
  // not used mimalloc yet, such as the sweeper's, which only frees (measured: bench/burst.cc,
  // docs/memory.md). mi_thread_init() gives the thread its heap first (it does nothing when the
  // thread has one), so that the collection reaches what the threads share.
  if (api_->thread_init != nullptr) api_->thread_init();
  api_->collect(force);
}

void* MimallocResource::do_allocate(size_t bytes, size_t alignment) {
  // mi_malloc_aligned() of mimalloc 2.0.9 (Debian 12's) returns blocks of 256 to 1024 bytes
  // aligned to 256 to 1024 that are only half as aligned (for example 256 bytes aligned to 256
  // came back 128-aligned); mi_malloc_aligned_at() with offset 0, the same request, does not
  // (every size up to 8 KiB and every alignment up to 64 KiB checked).
  void* p;
  if (MallocSuffices(bytes, alignment)) {
    p = api_->malloc(bytes);
  } else if (alignment <= kTryMallocAlignment && bytes % alignment == 0) {
    // mimalloc lays blocks out at multiples of their size class from an aligned page start, so
    // a size that is a multiple of a small alignment usually comes back aligned from plain
    // mi_malloc (every size class of a PoolResource did, at 16 to 64), which costs half what
    // the aligned call does for 1 KiB. Checked: when it is not aligned, it goes back and the
    // aligned call is made.
    p = api_->malloc(bytes);
    if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & (alignment - 1)) != 0) {
      api_->free(p);
      p = api_->malloc_aligned_at(bytes, alignment, 0);
    }
  } else {
    p = api_->malloc_aligned_at(bytes, alignment, 0);
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void MimallocResource::do_deallocate(void* p, size_t /*bytes*/, size_t /*alignment*/) {
  api_->free(p);
}

}  // namespace syncpool
