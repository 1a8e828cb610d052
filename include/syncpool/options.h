// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/options.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::Options`, the tunables of a Pool<T> or PoolResource, each with
// its default. docs/design.md lists them in one table with their environment variables.
//
// Options are validated when a pool or resource is constructed; an invalid value throws
// std::invalid_argument naming the field.

#ifndef SYNCPOOL_OPTIONS_H_
#define SYNCPOOL_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>

namespace syncpool {

class Sweeper;

struct Options {
  // The sweeper that runs this cache's epochs; nullptr means Sweeper::Default().
  Sweeper* sweeper = nullptr;

  // PoolResource: the largest request served from the size classes; larger requests go
  // straight upstream. At most 1 MiB.
  size_t max_block_size = 256 * 1024;

  // PoolResource: how many bytes of one size class one CPU may cache in one generation:
  // a class of size S caches min(max_blocks_per_class, max(2, per_cpu_class_bytes / S))
  // blocks per CPU and generation.
  size_t per_cpu_class_bytes = 64 * 1024;

  // The most blocks (PoolResource) or objects (Pool<T>) one CPU caches per size class and
  // generation. At least 1.
  uint32_t max_blocks_per_class = 128;

  // Whether the per-CPU caches may use restartable sequences (Linux x86-64 with glibc's rseq
  // area; see internal/percpu_rseq.h). false forces the locked fallback, as does
  // SYNCPOOL_RSEQ=0 for every cache of the process. Both serve the same API and policy.
  bool allow_rseq = true;

  // Whether misuse is checked: a deallocate whose size or alignment differs from the
  // allocation, a deallocate of a pointer the resource did not hand out (or a second
  // deallocate), a second Put of the same object. A detected mistake aborts with a message
  // naming it. Unset: on in builds without NDEBUG, or when SYNCPOOL_DEBUG=1; off otherwise.
  // Checks serialize operations on one lock; they are for finding bugs, not for production.
  std::optional<bool> debug_checks;
};

}  // namespace syncpool

#endif  // SYNCPOOL_OPTIONS_H_
