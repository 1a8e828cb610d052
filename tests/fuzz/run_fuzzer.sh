#!/usr/bin/env bash
# Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
#
# Runs a libFuzzer binary over a seed corpus and then on mutated inputs, for a bounded number of
# runs; exits nonzero on the first crash, sanitizer report, leak or timeout (libFuzzer's own exit
# status). The seeds are copied to a scratch directory first, since libFuzzer writes the new
# inputs it finds into its corpus directory. Crash artifacts go to the test's undeclared
# outputs (bazel-testlogs/.../test.outputs) when run by `bazel test`.
#
#   run_fuzzer.sh FUZZER SEED... -- LIBFUZZER_FLAG...
set -euo pipefail

fuzzer="$1"
shift
work="${TEST_TMPDIR:-$(mktemp -d)}"
corpus="${work}/corpus"
mkdir -p "${corpus}"
while (($#)) && [[ "$1" != "--" ]]; do
  cp -L "$1" "${corpus}/"
  shift
done
if (($#)); then shift; fi  # The "--".
artifacts="${TEST_UNDECLARED_OUTPUTS_DIR:-${work}}/"

echo "run_fuzzer.sh: $(ls "${corpus}" | wc -l) seeds; ${fuzzer} $*"
exec "${fuzzer}" -print_final_stats=1 -timeout=30 -artifact_prefix="${artifacts}" "$@" "${corpus}"
