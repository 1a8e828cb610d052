// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The libraries behind bench/direct_allocators.h, loaded locally, and Bump's chunks.

#include "bench/direct_allocators.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace syncpool {
namespace bench {
namespace direct_internal {

std::string& MimallocError() {
  static std::string error = "not loaded (LoadDirectAllocators() not called)";
  return error;
}
std::string& TcmallocError() {
  static std::string error = "not loaded (LoadDirectAllocators() not called)";
  return error;
}
std::string& JemallocError() {
  static std::string error = "not loaded (LoadDirectAllocators() not called)";
  return error;
}

namespace {

// The calling thread's chunks, in the order the bump pointer goes through them.
struct Chunk {
  uintptr_t base;
  size_t size;
  uintptr_t end() const { return base + size; }
};

class Chunks {
 public:
  Chunks() = default;
  Chunks(const Chunks&) = delete;
  Chunks& operator=(const Chunks&) = delete;
  ~Chunks() { Release(); }

  void* Refill(size_t bytes, size_t alignment) {
    const auto align = [alignment](uintptr_t p) { return (p + alignment - 1) & ~(alignment - 1); };
    // What the fast path declined: an exact fit or a large alignment in the current chunk.
    if (bump_cursor != 0) {
      const uintptr_t p = align(bump_cursor);
      if (p <= bump_limit && bump_limit - p >= bytes) return Take(p, bytes);
    }
    const size_t next = chunks_.empty() ? 0 : current_ + 1;
    if (next < chunks_.size()) {
      const Chunk& chunk = chunks_[next];
      const uintptr_t p = align(chunk.base);
      if (p <= chunk.end() && chunk.end() - p >= bytes) return Enter(next, p, bytes);
    }
    // A new chunk after the current one: 1 MiB, doubling with each chunk up to 64 MiB, or
    // what the block needs.
    constexpr size_t kFirst = size_t{1} << 20;
    constexpr size_t kMost = size_t{64} << 20;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    if (bytes > SIZE_MAX / 2 - alignment) return nullptr;
    size_t size = std::min(kFirst << std::min<size_t>(chunks_.size(), 6), kMost);
    size = std::max(size, (bytes + alignment + page - 1) / page * page);
    void* memory = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (memory == MAP_FAILED) return nullptr;
    const Chunk chunk{reinterpret_cast<uintptr_t>(memory), size};
    chunks_.insert(chunks_.begin() + static_cast<std::ptrdiff_t>(next), chunk);
    return Enter(next, align(chunk.base), bytes);
  }

  void Reset() {
    current_ = 0;
    bump_cursor = chunks_.empty() ? 0 : chunks_.front().base;
    bump_limit = chunks_.empty() ? 0 : chunks_.front().end();
  }

  void Release() {
    for (const Chunk& chunk : chunks_) munmap(reinterpret_cast<void*>(chunk.base), chunk.size);
    chunks_.clear();
    current_ = 0;
    bump_cursor = 0;
    bump_limit = 0;
  }

 private:
  void* Enter(size_t index, uintptr_t p, size_t bytes) {
    current_ = index;
    bump_limit = chunks_[index].end();
    return Take(p, bytes);
  }

  static void* Take(uintptr_t p, size_t bytes) {
    bump_cursor = p + bytes;
    return reinterpret_cast<void*>(p);
  }

  std::vector<Chunk> chunks_;
  size_t current_ = 0;
};

Chunks& ThreadChunks() {
  thread_local Chunks chunks;
  return chunks;
}

}  // namespace

void* BumpRefill(size_t bytes, size_t alignment) { return ThreadChunks().Refill(bytes, alignment); }
void BumpReset() { ThreadChunks().Reset(); }
void BumpRelease() { ThreadChunks().Release(); }

}  // namespace direct_internal

namespace {

using direct_internal::jemalloc;
using direct_internal::mimalloc;
using direct_internal::tcmalloc;

// The tunable that makes room for jemalloc's initial-exec TLS in a library loaded at run time.
constexpr char kStaticTlsTunable[] = "glibc.rtld.optional_static_tls";
constexpr char kStaticTlsSetting[] = "glibc.rtld.optional_static_tls=8192";

// Whether this process was started again by LoadDirectAllocators() for jemalloc.
bool rerun_for_jemalloc = false;

std::string DlError(const char* what) {
  const char* error = dlerror();
  return std::string(what) + ": " + (error != nullptr ? error : "unknown error");
}

// Resolves `name` into `*out`; false (with the error) when it is missing.
template <typename F>
bool Resolve(void* library, const char* name, F* out, std::string* error) {
  *out = reinterpret_cast<F>(dlsym(library, name));
  if (*out == nullptr && error->empty()) *error = DlError(name);
  return *out != nullptr;
}

void* Open(const char* file, std::string* error) {
  void* library = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) *error = DlError("dlopen");
  return library;
}

// Runs this program again with room for jemalloc's TLS (see the header), when GLIBC_TUNABLES
// does not already set it. Returns only when that is not done or execv fails.
void RerunWithStaticTls(char** argv) {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (argv == nullptr || (tunables != nullptr && std::strstr(tunables, kStaticTlsTunable))) {
    return;
  }
  const std::string value = tunables != nullptr && *tunables != '\0'
                                ? std::string(tunables) + ":" + kStaticTlsSetting
                                : std::string(kStaticTlsSetting);
  setenv("GLIBC_TUNABLES", value.c_str(), 1);
  setenv("SYNCPOOL_BENCH_RERUN", "jemalloc", 1);
  std::fflush(nullptr);
  execv("/proc/self/exe", argv);
  // execv failed: go on without jemalloc.
  unsetenv("SYNCPOOL_BENCH_RERUN");
  if (tunables != nullptr) {
    setenv("GLIBC_TUNABLES", tunables, 1);
  } else {
    unsetenv("GLIBC_TUNABLES");
  }
}

void LoadJemalloc(char** argv) {
  std::string error;
  void* library = Open("libjemalloc.so.2", &error);
  if (library == nullptr && error.find("static TLS") != std::string::npos) {
    RerunWithStaticTls(argv);
    // Still here: GLIBC_TUNABLES set the tunable already (too low), or execv failed.
    error += " (raise " + std::string(kStaticTlsTunable) + " in GLIBC_TUNABLES)";
  }
  direct_internal::JemallocFunctions f;
  if (library != nullptr && Resolve(library, "mallocx", &f.mallocx, &error) &&
      Resolve(library, "sdallocx", &f.sdallocx, &error)) {
    jemalloc = f;
    error.clear();
  }
  direct_internal::JemallocError() = error;
}

void LoadMimalloc() {
  std::string error;
  void* library = Open("libmimalloc.so.2", &error);
  direct_internal::MimallocFunctions f;
  if (library != nullptr && Resolve(library, "mi_malloc", &f.malloc, &error) &&
      Resolve(library, "mi_malloc_aligned_at", &f.malloc_aligned_at, &error) &&
      Resolve(library, "mi_free", &f.free, &error)) {
    mimalloc = f;
  }
  direct_internal::MimallocError() = error;
}

void LoadTcmalloc() {
  std::string error;
  void* library = Open("libtcmalloc_minimal.so.4", &error);
  direct_internal::TcmallocFunctions f;
  if (library != nullptr && Resolve(library, "tc_malloc", &f.malloc, &error) &&
      Resolve(library, "tc_memalign", &f.memalign, &error) &&
      Resolve(library, "tc_free", &f.free, &error) &&
      Resolve(library, "tc_free_sized", &f.free_sized, &error)) {
    tcmalloc = f;
  }
  direct_internal::TcmallocError() = error;
}

}  // namespace

void LoadDirectAllocators(char** argv) {
  const char* rerun = std::getenv("SYNCPOOL_BENCH_RERUN");
  rerun_for_jemalloc = rerun != nullptr && std::strcmp(rerun, "jemalloc") == 0;
  if (rerun_for_jemalloc) unsetenv("SYNCPOOL_BENCH_RERUN");
  // jemalloc first: it may run the program again, best before anything else is loaded.
  LoadJemalloc(argv);
  LoadMimalloc();
  LoadTcmalloc();
}

std::string DirectAllocatorsContext() {
  const auto status = [](const char* name, bool loaded, const std::string& error) {
    return std::string(name) + (loaded ? " loaded" : " missing (" + error + ")");
  };
  std::string text = "dlopen(RTLD_LOCAL): " +
                     status("libmimalloc.so.2", Mimalloc::Available(), Mimalloc::Error()) + "; " +
                     status("libtcmalloc_minimal.so.4", Tcmalloc::Available(), Tcmalloc::Error()) +
                     "; " + status("libjemalloc.so.2", Jemalloc::Available(), Jemalloc::Error());
  if (rerun_for_jemalloc) {
    text += " (run again with GLIBC_TUNABLES=" + std::string(kStaticTlsSetting) +
            " for jemalloc's static TLS)";
  }
  return text;
}

std::string MallocOwner() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&malloc), &info) == 0 || info.dli_fname == nullptr) {
    return "unknown";
  }
  return info.dli_fname;
}

}  // namespace bench
}  // namespace syncpool
