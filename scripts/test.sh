#!/usr/bin/env bash
# The whole test suite: installs what is missing (scripts/install_deps.sh), then
#   1. bazel test //...                  GCC 12, the default configuration
#   2. bazel test --config=clang //...   clang 14 with -Wthread-safety
#   3. bazel test --config=asan //...    AddressSanitizer + UndefinedBehaviorSanitizer (clang)
#   4. bazel test --config=tsan //...    ThreadSanitizer (clang; the per-thread caches)
#   5. bazel test --config=fuzz //tests/fuzz:pool_fuzzer_test
#                 //tests/fuzz:pool_fuzzer_perthread_test
#      the fuzzer, in the default and the per-thread mode at once: its seed corpus, then
#      mutations, 10,000 runs each, under AddressSanitizer + UndefinedBehaviorSanitizer with
#      the library instrumented for libFuzzer's coverage (.bazelrc's fuzz config; clang);
#      fails on a finding, and when either stops short of 10,000 runs (their limit is
#      1800 s; they took 2 to 6 and 4 to 9 minutes on 2 vCPUs: tests/fuzz/BUILD.bazel)
#   6. tests/valgrind_test.sh            API, policy and growth tests under valgrind (per thread)
#   7. bazel build -c opt //bench/...    the benchmarks, optimized, so they keep compiling
#   8. scripts/cmake_tests.sh            the CMake build and its tests (CTest), and the check
#                                        that it runs every Bazel cc_test
#   9. scripts/consumers.sh              examples/: programs using syncpool through CMake,
#                                        pkg-config and Bazel, each printing a line checked
#  10. scripts/package.sh                the Debian package libsyncpool-dev: its fields, its
#                                        files, the CMake consumer against its unpacked tree
#  11. scripts/aarch64.sh                cross build for aarch64, tests under qemu-aarch64 (the
#                                        per-thread mode); skips where the arm64 packages are
#                                        not installable
#  12. scripts/layers_graph.sh --check   docs/layers.dot (the picture of the layers in
#                                        docs/design.md) still matches the build graph
#  13. scripts/check_docs_data.sh        every file of docs/data is listed in its README and
#                                        quoted by a document
# Every step runs even when an earlier one fails; a summary follows and the exit status is
# nonzero when any step failed. Extra arguments are passed to every Bazel command (steps 1-7),
# e.g.
#   bash scripts/test.sh --test_output=all
# Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install_deps.sh

names=()
results=()
failed=0

# step NAME COMMAND...: runs one command and records its outcome and duration. Exit status 77
# means skipped (scripts/aarch64.sh without the arm64 packages): not a failure.
step() {
  local name="$1"
  shift
  echo
  echo "==> ${name}: $*"
  local start="${SECONDS}" rc=0
  "$@" || rc=$?
  local took=$((SECONDS - start))
  names+=("${name}")
  if ((rc == 0)); then
    results+=("ok      ${took}s")
  elif ((rc == 77)); then  # the step's own word that it could not run here (it says why)
    results+=("SKIPPED ${took}s")
  else
    results+=("FAILED  ${took}s (exit ${rc})")
    failed=1
  fi
}

total_start="${SECONDS}"
step "gcc tests" bazel test //... "$@"
step "clang tests" bazel test --config=clang //... "$@"
step "asan tests" bazel test --config=asan //... "$@"
step "tsan tests" bazel test --config=tsan //... "$@"
# 10,000 runs each or the step fails (tests/fuzz/run_fuzzer.sh checks libFuzzer's count).
step "fuzzer" bazel test --config=fuzz //tests/fuzz:pool_fuzzer_test \
  //tests/fuzz:pool_fuzzer_perthread_test "$@"
step "valgrind" bazel test //tests:valgrind_test "$@"
step "opt benchmarks" bazel build -c opt //bench/... "$@"
step "cmake tests" bash scripts/cmake_tests.sh
step "consumers" bash scripts/consumers.sh
step "package" bash scripts/package.sh
step "aarch64" bash scripts/aarch64.sh
step "layers graph" bash scripts/layers_graph.sh --check
step "docs data" bash scripts/check_docs_data.sh

echo
echo "==> summary ($((SECONDS - total_start))s)"
for i in "${!names[@]}"; do
  printf '    %-16s %s\n' "${names[i]}" "${results[i]}"
done
if ((failed)); then
  echo "FAILED"
  exit 1
fi
echo "PASSED"
