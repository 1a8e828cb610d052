"""The layers of syncpool as build targets.

Each layer is a cc_library that depends only on the layers below it, so the dependency graph
is the layering: a source that includes a header of a higher layer does not find it (Bazel's
sandbox holds the headers of a target's dependencies only) and fails to build. docs/design.md
draws the graph (scripts/layers_graph.sh).

syncpool_layers() declares every layer once per variant: the library itself (suffix ""), and
the test-seam variant (`_rseq_window_for_test`), every source of which force-includes
src/test_seams.h (SEAM_COPTS), as the tests that link it must too.
"""

load("//bazel:copts.bzl", "SYNCPOOL_COPTS")

# Layer name, from the bottom up: (sources, headers, layers below it that it uses, other deps).
LAYERS = [
    ("base", [
        "src/env.cc",
        "src/fork.cc",
        "src/options.cc",
        "src/pages.cc",
        "src/spinlock.cc",
        "src/stats.cc",
        "src/stats_report.cc",
        "src/sweepable.cc",
    ], [
        "src/fork.h",
        "src/option_table.h",
        "src/pages.h",
        "include/syncpool/internal/percpu_abi.h",
        "include/syncpool/internal/size_class.h",
        "src/slot_array.h",
        "src/spinlock.h",
        "src/stats_report.h",
        "src/sweepable.h",
        "include/syncpool/options.h",
        "include/syncpool/stats.h",
        "include/syncpool/version.h",
        "src/env.h",
        "src/mutex.h",
    ], [], [
        "@com_google_absl//absl/base",
        "@com_google_absl//absl/strings",
        "@com_google_absl//absl/strings:str_format",
    ]),
    ("cpu", ["src/cpu.cc"], [
        "src/cpu.h",
        "src/fake_cpu.h",
    ], ["base"], []),
    ("percpu", ["src/cpu_cache.cc"], [
        "src/cpu_cache.h",
    ], ["base"], []),
    ("rseq", ["src/percpu_rseq.cc"], [
        "include/syncpool/internal/percpu_rseq.h",
        "src/current_cpu.h",
    ], ["cpu", "percpu"], []),
    ("thread_slots", ["src/thread_slots.cc"], [
        "include/syncpool/internal/local_cache.h",
        "src/thread_slots.h",
    ], ["percpu", "rseq"], []),
    ("transfer", ["src/transfer_stack.cc"], [
        "src/transfer_stack.h",
    ], ["base"], []),
    ("sweeper", ["src/pressure.cc", "src/sweeper.cc"], [
        "include/syncpool/sweeper.h",
        "src/sweeper_access.h",
    ], ["thread_slots"], []),
    ("cache", [
        "src/block_cache.cc",
        "src/block_cache_budget.cc",
        "src/block_cache_epoch.cc",
        "src/block_cache_remote.h",
        "src/block_cache_slow.cc",
        "src/cache_policy.cc",
    ], [
        "src/block_cache.h",
        "src/block_releaser.h",
        "src/cache_policy.h",
    ], ["rseq", "sweeper", "thread_slots", "transfer"], []),
]

# The public faces, above every layer.
FACES_SRCS = [
    "src/debug_registry.cc",
    "src/debug_registry.h",
    "src/large_blocks.cc",
    "src/large_blocks.h",
    "src/mimalloc_resource.cc",
    "src/pool.cc",
    "src/pool_resource.cc",
    "src/spans.cc",
    "src/spans.h",
    "src/upstream_meter.h",
]

FACES_HDRS = [
    "include/syncpool/mimalloc_resource.h",
    "include/syncpool/owned_bytes.h",
    "include/syncpool/pool.h",
    "include/syncpool/pool_allocator.h",
    "include/syncpool/pool_resource.h",
]

# What every source of the test-seam variant, and every test that links it, is compiled with:
# src/test_seams.h first, which defines the hook points the installed headers leave empty.
SEAM_COPTS = ["-include", "src/test_seams.h"]

def layer_name(layer, suffix):
    return "syncpool_" + layer + suffix

def syncpool_layers(name, suffix = "", seams = False, testonly = False, visibility = None):
    """Declares the layers and `name`, the public faces over them.

    Args:
      name: the target of the public faces (the one to depend on).
      suffix: appended to every layer's name (syncpool_<layer><suffix>).
      seams: the test-seam variant: SEAM_COPTS everywhere, src/test_seams.h a header of the
        lowest layer (so an input of every compile above it).
      testonly: for the test-seam variant.
      visibility: of `name`; the layers are visible to this package, tests and benchmarks.
    """
    internal = ["//:__pkg__", "//tests:__subpackages__", "//bench:__pkg__", "//tools:__pkg__"]
    for layer, srcs, hdrs, below, other in LAYERS:
        native.cc_library(
            name = layer_name(layer, suffix),
            srcs = srcs,
            hdrs = hdrs + (["src/test_seams.h"] if seams and layer == "base" else []),
            copts = SYNCPOOL_COPTS + (SEAM_COPTS if seams else []),
            includes = ["include"],
            linkopts = ["-pthread"],
            testonly = testonly,
            visibility = internal,
            deps = [":" + layer_name(b, suffix) for b in below] + other,
        )
    native.cc_library(
        name = name,
        srcs = FACES_SRCS,
        hdrs = FACES_HDRS,
        copts = SYNCPOOL_COPTS + (SEAM_COPTS if seams else []),
        includes = ["include"],
        linkopts = ["-pthread"],
        testonly = testonly,
        visibility = visibility,
        deps = [":" + layer_name(layer, suffix) for layer, _, _, _, _ in LAYERS] + [
            "@com_google_absl//absl/debugging:symbolize",
            "@mimalloc//:mimalloc_headers",
        ],
    )
