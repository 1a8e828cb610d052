// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/direct_allocators.h
// -----------------------------------------------------------------------------
//
// Standard C++ allocators (rebindable, stateless, all instances equal) over other allocators'
// own functions, for bench/workload_bench.cc's stricter peers: no std::pmr virtual call, the
// container calls the allocator's inline allocate(), which calls the library's function through
// a pointer resolved once at startup.
//
//   DirectAllocator<T, Mimalloc>  mi_malloc / mi_free (mi_malloc_aligned_at above 16-byte
//                                 alignment), from libmimalloc.so.2
//   DirectAllocator<T, Tcmalloc>  gperftools' tc_malloc / tc_free_sized (tc_memalign / tc_free
//                                 above 16), from libtcmalloc_minimal.so.4
//   DirectAllocator<T, Jemalloc>  mallocx / sdallocx (MALLOCX_LG_ALIGN above 16), from
//                                 libjemalloc.so.2
//   DirectAllocator<T, Bump>      the physical floor: a pointer bumped through memory mapped and
//                                 touched beforehand; deallocate does nothing (see Bump)
//
// The three libraries are loaded with dlopen(RTLD_NOW | RTLD_LOCAL), as
// src/mimalloc_resource.cc loads mimalloc: each of them defines malloc, free and operator new
// itself, and linking one would replace them for the whole program (the other rows, Google
// Benchmark, the containers of `std`); loaded locally, their symbols interpose nothing and
// malloc stays glibc's. No header of theirs is needed to build (the prototypes are declared
// here), so the benchmark builds without libjemalloc-dev or libgoogle-perftools-dev; a library
// missing at run time makes its rows skip with the dlopen error.
//
// jemalloc (Debian's libjemalloc2) keeps its thread state in initial-exec TLS (2.6 KiB,
// DF_STATIC_TLS), more than glibc leaves for libraries loaded after startup (the tunable
// glibc.rtld.optional_static_tls, 512 bytes by default, plus a little), so a plain dlopen
// fails with "cannot allocate memory in static TLS block".
// LoadDirectAllocators() then runs the program again (execv of /proc/self/exe, same arguments)
// with glibc.rtld.optional_static_tls=8192 added to GLIBC_TUNABLES, unless that tunable is
// already set, in which case the jemalloc rows skip with the error.
//
// Thread safety: every allocator is thread-safe; Bump's arena is the calling thread's own.

#ifndef SYNCPOOL_BENCH_DIRECT_ALLOCATORS_H_
#define SYNCPOOL_BENCH_DIRECT_ALLOCATORS_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <string>
#include <type_traits>

namespace syncpool {
namespace bench {

// Loads the libraries and resolves their functions; call once, first thing in main() (it may
// run the program again, see the top comment), before any thread starts. `argv` is main()'s.
void LoadDirectAllocators(char** argv);

// What LoadDirectAllocators() loaded, one line for the output's context, and which library
// serves the program's own malloc (glibc's libc.so.6, when nothing interposed it).
std::string DirectAllocatorsContext();
std::string MallocOwner();

namespace direct_internal {

struct MimallocFunctions {
  void* (*malloc)(size_t) = nullptr;
  void* (*malloc_aligned_at)(size_t, size_t, size_t) = nullptr;
  void (*free)(void*) = nullptr;
};

struct TcmallocFunctions {
  void* (*malloc)(size_t) = nullptr;
  void* (*memalign)(size_t alignment, size_t size) = nullptr;
  void (*free)(void*) = nullptr;
  void (*free_sized)(void*, size_t) = nullptr;
};

struct JemallocFunctions {
  void* (*mallocx)(size_t, int) = nullptr;
  void (*sdallocx)(void*, size_t, int) = nullptr;
};

// Set once by LoadDirectAllocators(), read-only afterwards. Null functions: not loaded.
inline MimallocFunctions mimalloc;
inline TcmallocFunctions tcmalloc;
inline JemallocFunctions jemalloc;

// Why a library is not loaded (dlerror's text), or empty.
std::string& MimallocError();
std::string& TcmallocError();
std::string& JemallocError();

// The calling thread's bump pointer and the end of its current chunk (Bump).
inline constinit thread_local uintptr_t bump_cursor = 0;
inline constinit thread_local uintptr_t bump_limit = 0;

// Bump's slow path: moves to the next chunk (mapping it the first time), returns the block.
void* BumpRefill(size_t bytes, size_t alignment);
void BumpReset();
void BumpRelease();

}  // namespace direct_internal

// Every block of at most this alignment comes from the libraries' plain malloc: each of them
// aligns a block whose size is a multiple of 16 to 16 (and an allocator's block is a multiple
// of its type's alignment).
inline constexpr size_t kPlainAlignment = 16;

// mimalloc 2.0.9. mi_free, not mi_free_size: the latter only checks the size in mimalloc's
// debug builds and calls mi_free. Above 16 bytes of alignment, mi_malloc_aligned_at with offset
// 0 (mi_malloc_aligned of 2.0.9 under-aligns some blocks: src/mimalloc_resource.cc).
struct Mimalloc {
  static bool Available() { return direct_internal::mimalloc.malloc != nullptr; }
  static std::string Error() { return direct_internal::MimallocError(); }
  static void* Allocate(size_t bytes, size_t alignment) {
    if (alignment <= kPlainAlignment) return direct_internal::mimalloc.malloc(bytes);
    return direct_internal::mimalloc.malloc_aligned_at(bytes, alignment, 0);
  }
  static void Deallocate(void* p, size_t /*bytes*/, size_t /*alignment*/) {
    direct_internal::mimalloc.free(p);
  }
};

// gperftools 2.10's tcmalloc (the minimal library: no heap profiler or checker). The sized free
// skips the page map lookup; an over-aligned block (tc_memalign) may lie in a larger size class
// than its size says, so it goes back through tc_free.
struct Tcmalloc {
  static bool Available() { return direct_internal::tcmalloc.malloc != nullptr; }
  static std::string Error() { return direct_internal::TcmallocError(); }
  static void* Allocate(size_t bytes, size_t alignment) {
    if (alignment <= kPlainAlignment) return direct_internal::tcmalloc.malloc(bytes);
    return direct_internal::tcmalloc.memalign(alignment, bytes);
  }
  static void Deallocate(void* p, size_t bytes, size_t alignment) {
    if (alignment <= kPlainAlignment) {
      direct_internal::tcmalloc.free_sized(p, bytes);
    } else {
      direct_internal::tcmalloc.free(p);
    }
  }
};

// jemalloc 5.3's non-standard API: mallocx and the sized sdallocx, with the same flags (the
// alignment's log2 above 16, as MALLOCX_LG_ALIGN). mallocx of 0 bytes is undefined: 1 instead.
struct Jemalloc {
  static bool Available() { return direct_internal::jemalloc.mallocx != nullptr; }
  static std::string Error() { return direct_internal::JemallocError(); }
  static int Flags(size_t alignment) {
    return alignment <= kPlainAlignment ? 0 : std::countr_zero(alignment);
  }
  static void* Allocate(size_t bytes, size_t alignment) {
    return direct_internal::jemalloc.mallocx(bytes != 0 ? bytes : 1, Flags(alignment));
  }
  static void Deallocate(void* p, size_t bytes, size_t alignment) {
    direct_internal::jemalloc.sdallocx(p, bytes != 0 ? bytes : 1, Flags(alignment));
  }
};

// The physical floor of any allocator: allocate bumps the calling thread's pointer through
// chunks mapped with MAP_POPULATE (faulted in before use), aligned to 8 bytes at least (the
// smallest granule of mimalloc, tcmalloc and jemalloc); deallocate does nothing. Reset() moves
// the pointer back to the start of the thread's first chunk (O(1)): the workload calls it
// before each iteration, once everything the previous one built is destroyed. The chunks stay
// mapped, so an iteration that allocates what the previous one did (the workloads are
// deterministic) reuses the same memory, already faulted in, and maps nothing: chunks are
// mapped during the warm-up iteration, outside the timing. They grow from 1 MiB, doubling up
// to 64 MiB (or the size of a larger block), and are unmapped by Release() or when the thread
// exits.
struct Bump {
  static constexpr size_t kMinAlignment = 8;
  static constexpr size_t kPageSize = 4096;
  static bool Available() { return true; }
  static std::string Error() { return {}; }
  static void* Allocate(size_t bytes, size_t alignment) {
    using direct_internal::bump_cursor;
    using direct_internal::bump_limit;
    const uintptr_t mask = (alignment > kMinAlignment ? alignment : kMinAlignment) - 1;
    // Chunks start and end on page boundaries, so an aligned cursor stays within its chunk
    // (larger alignments take the slow path). An exact fit takes it too: one comparison
    // covers the empty arena (cursor and limit 0) and a request of 0 bytes.
    const uintptr_t p = (bump_cursor + mask) & ~mask;
    if (mask >= kPageSize || bump_limit - p <= bytes) [[unlikely]] {
      return direct_internal::BumpRefill(bytes, mask + 1);
    }
    bump_cursor = p + bytes;
    return reinterpret_cast<void*>(p);
  }
  static void Deallocate(void* /*p*/, size_t /*bytes*/, size_t /*alignment*/) {}
  // Before an iteration: everything allocated since the last Reset() is dead.
  static void Reset() { direct_internal::BumpReset(); }
  // Unmaps the calling thread's chunks.
  static void Release() { direct_internal::BumpRelease(); }
};

// A standard allocator over `Library` (Mimalloc, Tcmalloc, Jemalloc, Bump): stateless, so
// every instance of every rebinding is equal and containers swap and move freely.
template <typename T, typename Library>
class DirectAllocator {
 public:
  using value_type = T;
  using is_always_equal = std::true_type;
  template <typename U>
  struct rebind {
    using other = DirectAllocator<U, Library>;
  };

  DirectAllocator() noexcept = default;
  template <typename U>
  DirectAllocator(const DirectAllocator<U, Library>& /*other*/) noexcept {}  // NOLINT

  [[nodiscard]] T* allocate(size_t n) {
    if (n > std::numeric_limits<size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    void* p = Library::Allocate(n * sizeof(T), alignof(T));
    if (p == nullptr) [[unlikely]] {
      throw std::bad_alloc();
    }
    return static_cast<T*>(p);
  }

  void deallocate(T* p, size_t n) noexcept { Library::Deallocate(p, n * sizeof(T), alignof(T)); }
};

template <typename T, typename U, typename Library>
bool operator==(const DirectAllocator<T, Library>& /*a*/,
                const DirectAllocator<U, Library>& /*b*/) noexcept {
  return true;
}

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_DIRECT_ALLOCATORS_H_
