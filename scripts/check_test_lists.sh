#!/usr/bin/env bash
# Checks that the CMake build runs the tests the Bazel build runs. The rule:
#   - every cc_test under //tests/... is a CTest test of the same name (its target name);
#   - every CTest test is a Bazel test under //tests/... (cc_test or sh_test).
# So a cc_test added to Bazel fails this check only if cmake/tests.cmake misses it (a new
# tests/*_test.cc is picked up by its glob; twins, renamed tests and the test-seam variant are
# its tables). Bazel's sh_tests need not run under CMake: those of Bazel's own outputs
# (dynamic_symbols_test, valgrind_test) and the fuzzer's (tests/fuzz) do not.
# Usage: check_test_lists.sh CMAKE_BUILD_DIR (configured with -DSYNCPOOL_BUILD_TESTS=ON).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${1:?usage: check_test_lists.sh CMAKE_BUILD_DIR}"

names() { sed 's/.*://' | sort -u; }

bazel_cc="$(bazel query --noshow_progress 'kind(cc_test, tests(//tests/...))' | names)"
bazel_all="$(bazel query --noshow_progress 'tests(//tests/...)' | names)"
ctest_all="$(ctest --test-dir "${build}" -N | sed -n 's/^ *Test *#[0-9]*: *//p' | sort -u)"

[[ -n "${bazel_cc}" ]] || { echo "FAIL: bazel query listed no cc_test" >&2; exit 1; }
[[ -n "${ctest_all}" ]] || { echo "FAIL: ctest -N listed no test in ${build}" >&2; exit 1; }

status=0
missing="$(comm -23 <(echo "${bazel_cc}") <(echo "${ctest_all}"))"
if [[ -n "${missing}" ]]; then
  echo "FAIL: Bazel cc_tests that CMake does not run (add them to cmake/tests.cmake):" >&2
  sed 's/^/  /' <<<"${missing}" >&2
  status=1
fi
extra="$(comm -13 <(echo "${bazel_all}") <(echo "${ctest_all}"))"
if [[ -n "${extra}" ]]; then
  echo "FAIL: CTest tests that are no Bazel test under //tests/...:" >&2
  sed 's/^/  /' <<<"${extra}" >&2
  status=1
fi
if ((status == 0)); then
  echo "PASS: CMake runs all $(wc -l <<<"${bazel_cc}") Bazel cc_tests" \
    "($(wc -l <<<"${ctest_all}") CTest tests, $(wc -l <<<"${bazel_all}") Bazel tests)"
fi
exit "${status}"
