// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "src/debug_registry.h"

#include <execinfo.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "absl/debugging/symbolize.h"
#include "src/env.h"
#include "src/option_table.h"

namespace syncpool {
namespace internal {

bool DebugChecksEnabled(const Options& options) {
  if (options.debug_checks.has_value()) return *options.debug_checks;
  // Read, and warned about, once per process.
  static const std::optional<bool> from_env =
      EnvOptionalBool(kOptionTable[kOptDebug].variable, "the build's default");
  return from_env.value_or(options.checks_by_build);
}

void DieOfMisuse(const std::string& pool, const char* format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  std::fprintf(stderr, "syncpool: %s: %s\n", pool.c_str(), message);
  // The caller's stack, this function left out, and the symbols the symbolizer finds. glibc's
  // backtrace() unwinds with the unwind tables, so it works without frame pointers too.
  void* frames[32];
  const int depth = backtrace(frames, 32);
  for (int i = 1; i < depth; ++i) {
    char symbol[256];
    const bool found = absl::Symbolize(frames[i], symbol, sizeof(symbol));
    std::fprintf(stderr, "    @ %p  %s\n", frames[i], found ? symbol : "(unknown)");
  }
  std::fflush(stderr);
  std::abort();
}

void DebugRegistry::OnAllocate(void* p, size_t bytes, size_t alignment) {
  MutexLock l(&mu_);
  if (!blocks_.emplace(p, Block{bytes, alignment}).second) {
    DieOfMisuse(pool_, "internal error: block %p handed out twice", p);
  }
}

void DebugRegistry::OnDeallocate(void* p, size_t bytes, size_t alignment) {
  MutexLock l(&mu_);
  auto it = blocks_.find(p);
  if (it == blocks_.end()) {
    DieOfMisuse(
        pool_, "deallocate of %p (size %zu, alignment %zu): this resource did not hand it out, or it "
        "was already deallocated (double deallocate)",
        p, bytes, alignment);
  }
  if (it->second.bytes != bytes) {
    DieOfMisuse(pool_, "deallocate of %p with size %zu, but it was allocated with size %zu", p, bytes,
                it->second.bytes);
  }
  if (it->second.alignment != alignment) {
    DieOfMisuse(pool_, "deallocate of %p with alignment %zu, but it was allocated with alignment %zu",
                p, alignment, it->second.alignment);
  }
  blocks_.erase(it);
}

DebugRegistry::Count DebugRegistry::Outstanding() {
  MutexLock l(&mu_);
  Count count;
  count.blocks = blocks_.size();
  for (const auto& [p, block] : blocks_) count.bytes += block.bytes;
  return count;
}

void DebugRegistry::Clear() {
  MutexLock l(&mu_);
  blocks_.clear();
}

void DebugRegistry::OnPut(void* obj) {
  MutexLock l(&mu_);
  if (!blocks_.emplace(obj, Block{0, 0}).second) {
    DieOfMisuse(pool_, "double Put: object %p is already in the pool", obj);
  }
}

void DebugRegistry::OnLeave(void* obj) {
  MutexLock l(&mu_);
  blocks_.erase(obj);
}

}  // namespace internal
}  // namespace syncpool
