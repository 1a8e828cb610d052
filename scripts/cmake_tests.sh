#!/usr/bin/env bash
# The CMake build and its tests: configures out/cmake (-DSYNCPOOL_BUILD_TESTS=ON, GCC, warnings
# are errors), builds, runs every test with CTest, then checks that CMake runs the tests Bazel
# runs (scripts/check_test_lists.sh). The stress tests run at a quarter of their iterations
# here (STRESS_TEST_ITERATIONS): Bazel's run is the full one.
# Usage: cmake_tests.sh [CTEST_ARGS...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cmake -S . -B out/cmake -G Ninja -DSYNCPOOL_BUILD_TESTS=ON
cmake --build out/cmake -j2
status=0
STRESS_TEST_ITERATIONS=15000 \
  ctest --test-dir out/cmake -j2 --output-on-failure "$@" || status=1
bash scripts/check_test_lists.sh out/cmake || status=1
exit "${status}"
