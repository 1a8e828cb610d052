#!/usr/bin/env bash
# Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
#
# Runs a libFuzzer binary over a seed corpus and then on mutated inputs, for a required number
# of runs, and fails
#   - on a crash, sanitizer report, leak or timeout of one input (libFuzzer's own exit status,
#     passed on), and
#   - when libFuzzer stopped short of the required runs: its final "Done N runs in S second(s)"
#     line must say N >= the -runs=N flag given (the last one, the one libFuzzer obeys), so a
#     -max_total_time that runs out first (a slow or loaded machine) fails the test instead of
#     passing on fewer runs. Without a -runs flag (or with -runs=-1) nothing is required.
# The seeds are copied to a scratch directory first, since libFuzzer writes the new inputs it
# finds into its corpus directory. Crash artifacts go to the test's undeclared outputs
# (bazel-testlogs/.../test.outputs) when run by `bazel test`.
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

required=0
for flag in "$@"; do
  if [[ "${flag}" =~ ^-runs=(-?[0-9]+)$ ]]; then required="${BASH_REMATCH[1]}"; fi
done
((required > 0)) || required=0

log="${work}/fuzzer.log"
echo "run_fuzzer.sh: $(ls "${corpus}" | wc -l) seeds; ${required} runs required;" \
  "${fuzzer} $*"
rc=0
"${fuzzer}" -print_final_stats=1 -timeout=30 -artifact_prefix="${artifacts}" "$@" "${corpus}" \
  2>&1 | tee "${log}" || rc=${PIPESTATUS[0]}
if ((rc != 0)); then
  echo "run_fuzzer.sh: FAILED: the fuzzer exited with status ${rc} (a finding: see above)" >&2
  exit "${rc}"
fi

# "Done 10000 runs in 364 second(s)", and -print_final_stats' count of the same runs.
done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "${log}" | tail -n 1 || true)
units=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)$/\1/p' "${log}" | tail -n 1)
if [[ -z "${done_line}" ]]; then
  echo "run_fuzzer.sh: FAILED: no final 'Done N runs in S second(s)' line from libFuzzer" >&2
  exit 1
fi
runs=$(awk '{print $2}' <<< "${done_line}")
if [[ -n "${units}" ]] && ((units < runs)); then runs="${units}"; fi
if ((runs < required)); then
  echo "run_fuzzer.sh: FAILED: libFuzzer stopped short: ${runs} runs done of the ${required}" \
    "required (${done_line}); its -max_total_time ran out first: this machine is too slow or" \
    "too loaded for the limit" >&2
  exit 1
fi
echo "run_fuzzer.sh: PASSED: ${runs} runs of the ${required} required (${done_line})"
