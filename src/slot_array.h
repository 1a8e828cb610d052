// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: src/slot_array.h
// -----------------------------------------------------------------------------
//
// A step shared by the CPU caches' and the TransferStack's generations (arrays of block
// pointers with a count). Not part of syncpool's API.

#ifndef SYNCPOOL_SRC_SLOT_ARRAY_H_
#define SYNCPOOL_SRC_SLOT_ARRAY_H_

#include <cstddef>
#include <cstdint>

namespace syncpool {
namespace internal {

// TakeFromSlots()
//
// Of the `n` blocks in `slots`, moves those for which `take(block)` holds to
// out[*moved, room), while there is room, and keeps the others in their order at the front of
// `slots`. Returns how many it kept (the new count). The caller holds whatever guards `slots`.
template <typename Take>
uint32_t TakeFromSlots(void** slots, uint32_t n, Take& take, void** out, size_t room,
                       size_t* moved) {
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (*moved < room && take(slots[i])) {
      out[(*moved)++] = slots[i];
    } else {
      slots[kept++] = slots[i];
    }
  }
  return kept;
}

}  // namespace internal
}  // namespace syncpool

#endif  // SYNCPOOL_SRC_SLOT_ARRAY_H_
