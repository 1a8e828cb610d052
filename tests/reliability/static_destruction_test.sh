#!/bin/bash
# Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
#
# Static destruction order: runs static_destruction_main (the program given as $1) in each of
# its modes, with the default sweep interval and with a 1 ms one (the sweeper's thread then
# sweeps all the time while the process exits), and with SYNCPOOL_STATS=1 (the statistics
# report runs at exit too). Each run must exit with status 0 and print, in this order, the
# markers of main returning and of the destructors and handlers that ran after it.

set -u

readonly BIN="$1"
failures=0

# expect MODE VAR=VALUE... -- MARKER...
expect() {
  local mode="$1"
  shift
  local vars=()
  while [[ "$1" != "--" ]]; do
    vars+=("$1")
    shift
  done
  shift
  local name="${mode} ${vars[*]}"
  local out status
  out="$(env "${vars[@]}" "${BIN}" "${mode}" 2>&1)"
  status=$?
  if [[ ${status} -ne 0 ]]; then
    echo "FAIL: ${name}: exit status ${status}"
    echo "${out}"
    failures=$((failures + 1))
    return
  fi
  local last=0 marker line
  for marker in "$@"; do
    line="$(grep -nF -- "${marker}" <<<"${out}" | head -n 1 | cut -d: -f1)"
    if [[ -z "${line}" || ${line} -le ${last} ]]; then
      echo "FAIL: ${name}: no \"${marker}\" after the previous marker"
      echo "${out}"
      failures=$((failures + 1))
      return
    fi
    last=${line}
  done
  echo "PASS: ${name}"
}

readonly MAIN_RETURNS="main returns"
readonly AFTER_STOP="static destructor after the sweeper stopped: pools usable"
readonly BEFORE_STOP="static destructor while the sweeper runs: pools usable"
readonly FIRST_USE="static destructor, first use of syncpool: pools usable"
readonly HANDLER="exit handler after the sweeper stopped: pools usable"

for interval in 1000 1; do
  sweep="SYNCPOOL_SWEEP_INTERVAL_MS=${interval}"
  expect after_stop "${sweep}" -- "${MAIN_RETURNS}" "${AFTER_STOP}"
  expect before_stop "${sweep}" -- "${MAIN_RETURNS}" "${BEFORE_STOP}"
  expect first_use_at_exit "${sweep}" -- "${MAIN_RETURNS}" "${FIRST_USE}" "${HANDLER}"
done
expect after_stop SYNCPOOL_STATS=1 -- "${MAIN_RETURNS}" "syncpool stats" "${AFTER_STOP}"
expect before_stop SYNCPOOL_STATS=1 -- "${MAIN_RETURNS}" "${BEFORE_STOP}" "syncpool stats"

if [[ ${failures} -ne 0 ]]; then
  echo "${failures} run(s) failed"
  exit 1
fi
