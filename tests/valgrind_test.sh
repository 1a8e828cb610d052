#!/usr/bin/env bash
# Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
#
# Tests under valgrind's memcheck, which refuses glibc's rseq registration: the caches run per
# thread there (checked first, through cache_mode_main), and the tests given must pass with no
# memcheck error (--error-exitcode).
#
#   valgrind_test.sh CACHE_MODE_MAIN TEST_BINARY...
set -euo pipefail

command -v valgrind >/dev/null || { echo "valgrind_test.sh: valgrind not found" >&2; exit 1; }
mode_main="$1"
shift
modes="$(valgrind --error-exitcode=1 -q "${mode_main}")"
echo "${modes}"
if [[ "$(grep -c '^per-thread (glibc did not register rseq)$' <<<"${modes}")" != 2 ]]; then
  echo "valgrind_test.sh: expected both caches per thread under valgrind" >&2
  exit 1
fi
for test in "$@"; do
  echo "valgrind_test.sh: ${test}"
  valgrind --error-exitcode=1 -q "${test}" --gtest_brief=1
done
echo "valgrind_test.sh: all passed"
