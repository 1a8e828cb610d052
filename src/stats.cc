// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "syncpool/stats.h"

#include "absl/strings/str_format.h"

namespace syncpool {

std::string Stats::DebugString() const {
  return absl::StrFormat(
      "hits=%d misses=%d steals=%d spills=%d direct=%d primary_blocks=%d primary_bytes=%d "
      "victim_blocks=%d victim_bytes=%d swept_blocks=%d swept_bytes=%d epochs=%d",
      hits, misses, steals, spills, direct, primary_blocks, primary_bytes, victim_blocks,
      victim_bytes, swept_blocks, swept_bytes, epochs);
}

}  // namespace syncpool
