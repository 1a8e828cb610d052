// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/debug_registry.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "syncpool/internal/option_table.h"

namespace syncpool {
namespace internal {

bool DebugChecksEnabled(const Options& options) {
  if (options.debug_checks.has_value()) return *options.debug_checks;
  static const bool from_env = EnvOption(kOptDebug) != 0;
  return from_env;
}

void DieOfMisuse(const char* format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  std::fprintf(stderr, "syncpool: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

void DebugRegistry::OnAllocate(void* p, size_t bytes, size_t alignment) {
  MutexLock l(&mu_);
  if (!blocks_.emplace(p, Block{bytes, alignment}).second) {
    DieOfMisuse("internal error: block %p handed out twice", p);
  }
}

void DebugRegistry::OnDeallocate(void* p, size_t bytes, size_t alignment) {
  MutexLock l(&mu_);
  auto it = blocks_.find(p);
  if (it == blocks_.end()) {
    DieOfMisuse(
        "deallocate of %p (size %zu, alignment %zu): this resource did not hand it out, or it "
        "was already deallocated (double deallocate)",
        p, bytes, alignment);
  }
  if (it->second.bytes != bytes) {
    DieOfMisuse("deallocate of %p with size %zu, but it was allocated with size %zu", p, bytes,
                it->second.bytes);
  }
  if (it->second.alignment != alignment) {
    DieOfMisuse("deallocate of %p with alignment %zu, but it was allocated with alignment %zu",
                p, alignment, it->second.alignment);
  }
  blocks_.erase(it);
}

void DebugRegistry::OnPut(void* obj) {
  MutexLock l(&mu_);
  if (!blocks_.emplace(obj, Block{0, 0}).second) {
    DieOfMisuse("double Put: object %p is already in the pool", obj);
  }
}

void DebugRegistry::OnLeave(void* obj) {
  MutexLock l(&mu_);
  blocks_.erase(obj);
}

}  // namespace internal
}  // namespace syncpool
