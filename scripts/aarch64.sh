#!/usr/bin/env bash
# syncpool on aarch64: cross-builds the library and its tests with Debian's cross compiler
# (cmake/aarch64-linux-gnu.cmake, into out/aarch64) against the arm64 builds of Abseil and
# GoogleTest, checks that the objects are AArch64 code, and runs the tests under qemu-aarch64.
# qemu's user mode has no rseq (and the restartable sequences are x86-64 code), so the caches
# run per thread there: a program built here must say so. The stress tests run at a tenth of
# their iterations (STRESS_TEST_ITERATIONS), and the tests that cannot work under qemu are
# left out (SKIPPED below).
# Skips, with exit status 77 (scripts/test.sh: "SKIPPED") and the reason, when the cross
# compiler, qemu or the arm64 libraries are missing (scripts/install_deps.sh installs them
# where the archive has them).
# Usage: aarch64.sh [CTEST_ARGS...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly BUILD=out/aarch64
# Left out under emulation, each for a reason of qemu's (x86-64 runs them all):
#   *_perthread   the twins: without rseq the plain tests already run per thread
#   *_cpuid       the twins that index the rseq caches by CPU id: no rseq, so no index
#   rseq_test     restartable sequences, which qemu does not have (minutes of timeouts)
#   fork_test     qemu 7.2 fails an assertion of its own (cpu_exec: cpu == current_cpu) when a
#                 child forked from a multi-threaded process starts a thread
#   misuse_test   its death tests re-execute the test program, which runs only through qemu
# and, within the other tests (GTEST_FILTER), TheResidentSetAgreesWithStats: under qemu the
# resident set is the emulator's; and the tests of VmSize and of ulimit -v, which measure and
# limit the emulator's address space.
readonly SKIPPED='(_perthread|_cpuid|^rseq_test|^fork_test|^misuse_test)$'
readonly GTEST_SKIPPED='-*TheResidentSetAgreesWithStats*:AddressSpaceTest.ManyPools*:AddressSpaceDeathTest.*'

missing=()
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
done
for pkg in libc6:arm64 libabsl-dev:arm64 libgtest-dev:arm64 libmimalloc2.0:arm64; do
  dpkg-query -W -f='${Status}\n' "${pkg}" 2>/dev/null | grep -qx 'install ok installed' ||
    missing+=("${pkg}")
done
if ((${#missing[@]} > 0)); then
  echo "SKIPPED: aarch64: not installed: ${missing[*]} (scripts/install_deps.sh could not" \
    "install them: see its output)"
  exit 77
fi

cmake -S . -B "${BUILD}" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DSYNCPOOL_BUILD_TESTS=ON
cmake --build "${BUILD}" -j2

status=0
machine="$(readelf -h "${BUILD}/pool_test" | sed -n 's/^ *Machine: *//p')"
if [[ "${machine}" != "AArch64" ]]; then
  echo "FAIL: ${BUILD}/pool_test is built for '${machine}', not AArch64" >&2
  exit 1
fi

# The mode the caches pick under qemu (tests/cache_mode_main.cc: a PoolResource's and a
# Pool<T>'s, debug checks off, one line each).
modes="$(qemu-aarch64 "${BUILD}/cache_mode_main" 2>&1 || true)"
if [[ "$(grep -c '^per-thread (' <<<"${modes}")" != 2 ]]; then
  echo "FAIL: under qemu-aarch64 the caches do not run per thread:" >&2
  echo "${modes}" >&2
  status=1
else
  echo "PASS: under qemu-aarch64 the caches run per thread: $(head -n 1 <<<"${modes}")"
fi

STRESS_TEST_ITERATIONS=6000 GTEST_FILTER="${GTEST_SKIPPED}" \
  ctest --test-dir "${BUILD}" -j2 --output-on-failure -E "${SKIPPED}" "$@" || status=1
echo "(not run under emulation: the tests matching ${SKIPPED}, and ${GTEST_SKIPPED#-})"
exit "${status}"
