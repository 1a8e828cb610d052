"""Test and benchmark rules of syncpool: one stanza's defaults, declared once."""

load("//bazel:copts.bzl", "SYNCPOOL_COPTS")

GTEST_MAIN = "@com_google_googletest//:gtest_main"
BENCHMARK = "@com_github_google_benchmark//:benchmark"

def syncpool_cc_test(
        name,
        srcs = None,
        deps = [],
        library = "//:syncpool",
        main = GTEST_MAIN,
        copts = [],
        both_modes = False,
        both_indexes = False,
        env = {},
        **kwargs):
    """A cc_test of syncpool; with both_modes, also `<name>_perthread`, run with SYNCPOOL_MODE=perthread.

    The plain test runs the caches in the mode the process picks (rseq per-CPU where glibc
    registered its area), the twin in the per-thread mode, so both run in every configuration.
    With both_indexes, also `<name>_cpuid`, run with SYNCPOOL_CPU_ID=cpu: the rseq caches'
    columns by CPU id where the plain test has them by concurrency id (on kernels with mm_cid).

    Args:
      name: the test; its source is `<name>.cc` unless `srcs` says otherwise.
      srcs: the sources, when not just `<name>.cc`.
      deps: what the test uses besides `library` and `main`.
      library: the syncpool target under test: //:syncpool, one layer (//:syncpool_percpu, ...)
        for a test of that layer alone, or the test-seam variant.
      main: GoogleTest's main(), or None for a test that has its own.
      copts: added to SYNCPOOL_COPTS.
      both_modes: also declare the per-thread twin.
      both_indexes: also declare the CPU-id twin.
      env: the test's environment (the twin adds SYNCPOOL_MODE=perthread to it).
      **kwargs: anything else cc_test takes (size, tags, linkopts, shard_count, timeout, ...).
    """
    args = dict(
        srcs = srcs if srcs != None else [name + ".cc"],
        copts = SYNCPOOL_COPTS + copts,
        deps = [d for d in [library, main] if d] + deps,
        **kwargs
    )
    native.cc_test(name = name, env = env, **args)
    if both_modes:
        twin_env = dict(env)
        twin_env["SYNCPOOL_MODE"] = "perthread"
        native.cc_test(name = name + "_perthread", env = twin_env, **args)
    if both_indexes:
        cpu_env = dict(env)
        cpu_env["SYNCPOOL_CPU_ID"] = "cpu"
        native.cc_test(name = name + "_cpuid", env = cpu_env, **args)

def syncpool_cc_library(name, copts = [], **kwargs):
    """A test-only cc_library of helpers, compiled with SYNCPOOL_COPTS."""
    native.cc_library(name = name, copts = SYNCPOOL_COPTS + copts, testonly = True, **kwargs)

def syncpool_cc_binary(
        name,
        srcs = None,
        deps = [],
        library = "//:syncpool",
        copts = [],
        testonly = True,
        **kwargs):
    """A benchmark, tool or test program of syncpool: a cc_binary over `library`, its source `<name>.cc`.

    Test-only, as benchmarks and test programs are, unless `testonly` says otherwise.
    """
    native.cc_binary(
        name = name,
        testonly = testonly,
        srcs = srcs if srcs != None else [name + ".cc"],
        copts = SYNCPOOL_COPTS + copts,
        deps = ([library] if library else []) + deps,
        **kwargs
    )
