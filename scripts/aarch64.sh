#!/usr/bin/env bash
# syncpool on aarch64: cross-builds the library and its tests with Debian's cross compiler
# (cmake/aarch64-linux-gnu.cmake, into out/aarch64) against the arm64 builds of Abseil and
# GoogleTest, checks that the objects are AArch64 code, and runs the tests under qemu-aarch64.
# qemu's user mode has no rseq (and the restartable sequences are x86-64 code), so the caches
# run per thread there: a program built here must say so. The stress tests run at a tenth of
# their iterations (SYNCPOOL_STRESS_ITERATIONS) and the longest tests are left out under
# emulation (SKIPPED below); the x86-64 runs have them all.
# Skips, with exit status 77 (scripts/test.sh: "SKIPPED") and the reason, when the cross
# compiler, qemu or the arm64 libraries are missing (scripts/install_deps.sh installs them
# where the archive has them).
# Usage: aarch64.sh [CTEST_ARGS...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly BUILD=out/aarch64
# Tests that take minutes under emulation and check nothing architecture-specific that the
# others do not: the rseq tests (no rseq under qemu) and the 200 forks of fork_test.
readonly SKIPPED='^(rseq_test|fork_test|fork_test_perthread)$'

missing=()
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
done
for pkg in libabsl-dev:arm64 libgtest-dev:arm64 libmimalloc2.0:arm64; do
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
modes="$(qemu-aarch64 -L /usr/aarch64-linux-gnu "${BUILD}/cache_mode_main" 2>&1 || true)"
if [[ "$(grep -c '^per-thread (' <<<"${modes}")" != 2 ]]; then
  echo "FAIL: under qemu-aarch64 the caches do not run per thread:" >&2
  echo "${modes}" >&2
  status=1
else
  echo "PASS: under qemu-aarch64 the caches run per thread: $(head -n 1 <<<"${modes}")"
fi

SYNCPOOL_STRESS_ITERATIONS=6000 \
  ctest --test-dir "${BUILD}" -j2 --output-on-failure --timeout 600 -E "${SKIPPED}" "$@" ||
  status=1
echo "(not run under emulation: ${SKIPPED})"
exit "${status}"
