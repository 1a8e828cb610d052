// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "syncpool/stats.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"

namespace syncpool {
namespace {

// Appends to `*text` what absl::StrAppendFormat would, formatted through a buffer: an
// exception (std::bad_alloc) from a string grown inside absl's formatting cannot leave its
// frames (the packaged version terminates instead), so the string grows here, outside them.
template <typename... Args>
void AppendFormat(std::string* text, const absl::FormatSpec<Args...>& format,
                  const Args&... args) {
  char small[1024];
  const int n = absl::SNPrintF(small, sizeof(small), format, args...);
  if (n < 0) return;
  if (static_cast<size_t>(n) < sizeof(small)) {
    text->append(small, static_cast<size_t>(n));
    return;
  }
  std::string large(static_cast<size_t>(n) + 1, '\0');  // May throw, here.
  absl::SNPrintF(large.data(), large.size(), format, args...);
  text->append(large.data(), static_cast<size_t>(n));
}

}  // namespace

std::string Stats::DebugString() const {
  std::string text = label.empty() ? std::string() : label + "\n";
  AppendFormat(&text,
      "cached: %d blocks, %d bytes (primary %d blocks, %d bytes; victim %d blocks, %d bytes)\n"
      "gets: %d from the caches, %d misses (%d more blocks refilled with them); "
      "per-CPU capacities grew %d times; "
      "%d requests passed straight upstream; %d blocks moved to the shared layer\n"
      "left the caches: %d reused, %d swept (%d bytes), %d over budget (%d bytes), "
      "%d under memory pressure (%d bytes), %d spilled from full caches, "
      "%d oversized (%d bytes)\n"
      "epochs: %d; pages given back to the system: %d bytes\n"
      "spans: %d bytes held, %d bytes of blocks in them, %d of them free; %d bytes given back\n"
      "upstream: %d bytes held (at most %d at once), %d bytes of them in use\n"
      "caches: %s (%s): %d, the largest holding %d bytes; %d bytes of address space reserved\n",
      cached_blocks(), cached_bytes(), primary_blocks, primary_bytes, victim_blocks,
      victim_bytes, hits, misses, refilled, grows, direct, shared_moves, hits, swept_blocks,
      swept_bytes,
      over_budget_blocks, over_budget_bytes, pressure_blocks, pressure_bytes, spills,
      oversized_objects, oversized_bytes, epochs, discarded_bytes, span_bytes, span_block_bytes, span_free_bytes,
      span_released_bytes, upstream_bytes, peak_upstream_bytes, in_use_bytes, mode, mode_reason,
      caches, max_cache_bytes, reserved_bytes);
  bool header = false;
  for (const ClassStats& c : classes) {
    if (c.hits == 0 && c.cached_blocks == 0 && c.span_bytes == 0 && c.in_use_blocks == 0) {
      continue;
    }
    if (!header) {
      text += "classes used (block size: hits, cached blocks; spans):\n";
      header = true;
    }
    AppendFormat(&text, "  %d: %d, %d", c.block_bytes, c.hits, c.cached_blocks);
    if (c.span_bytes != 0 || c.in_use_blocks != 0) {
      AppendFormat(&text, "; %d bytes of spans, %d blocks free, %d in use",
                            c.span_bytes, c.span_free_blocks, c.in_use_blocks);
    }
    text += "\n";
  }
  return text;
}

std::string Stats::ToString() const {
  std::string text;
  AppendFormat(&text,
      "label=\"%s\" hits=%d misses=%d grows=%d spills=%d shared_moves=%d direct=%d refilled=%d "
      "primary_blocks=%d "
      "primary_bytes=%d victim_blocks=%d victim_bytes=%d swept_blocks=%d swept_bytes=%d "
      "over_budget_blocks=%d over_budget_bytes=%d pressure_blocks=%d pressure_bytes=%d "
      "oversized_objects=%d oversized_bytes=%d discarded_bytes=%d span_bytes=%d "
      "span_block_bytes=%d span_free_bytes=%d span_released_bytes=%d upstream_bytes=%d "
      "peak_upstream_bytes=%d in_use_bytes=%d epochs=%d caches=%d max_cache_bytes=%d reserved_bytes=%d mode=\"%s\" "
      "mode_reason=\"%s\"",
      absl::CEscape(label), hits, misses, grows, spills, shared_moves, direct, refilled, primary_blocks, primary_bytes,
      victim_blocks,
      victim_bytes, swept_blocks, swept_bytes, over_budget_blocks, over_budget_bytes,
      pressure_blocks, pressure_bytes, oversized_objects, oversized_bytes, discarded_bytes, span_bytes,
      span_block_bytes, span_free_bytes, span_released_bytes, upstream_bytes, peak_upstream_bytes,
      in_use_bytes, epochs, caches, max_cache_bytes, reserved_bytes,
      mode, mode_reason);
  return text;
}

}  // namespace syncpool
