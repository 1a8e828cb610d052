#!/usr/bin/env bash
# Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
#
# A long fuzzing session: pool_fuzzer in the default and the per-thread mode
# (SYNCPOOL_MODE=perthread) at once, each for SECONDS, built as CI builds it (--config=fuzz:
# ASan + UBSan, the library instrumented for libFuzzer's coverage), each on its own scratch copy
# of tests/fuzz/corpus (the corpus in the tree is never written). Then, per mode: the dates,
# the git commit, the runs, the final coverage (cov/ft) and the findings (the crash-, leak-,
# timeout- and oom- files libFuzzer saved; it stops at the first one).
#
#   bash tests/fuzz/long_run.sh SECONDS [OUT_DIR] [-- LIBFUZZER_FLAG...]
#   bash tests/fuzz/long_run.sh 1800                 # 30 minutes, into a new /tmp directory
#
# OUT_DIR/<mode>/ holds fuzzer.log, corpus/ (seeds plus what it found) and artifacts/;
# OUT_DIR/summary.txt the report printed at the end. BAZEL (default: bazel) is the command
# used to build, e.g. BAZEL="bazel --output_base=/tmp/ob_fuzz". Exit status: 1 when a mode
# had a finding or failed, else 0. Works from any directory.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
usage="usage: bash tests/fuzz/long_run.sh SECONDS [OUT_DIR] [-- LIBFUZZER_FLAG...]"
if (($# < 1)) || ! [[ "$1" =~ ^[0-9]+$ ]]; then echo "${usage}" >&2; exit 2; fi
seconds=$1
shift
out=""
if (($#)) && [[ "$1" != "--" ]]; then out=$1; shift; fi
if (($#)); then shift; fi  # The "--".
[[ -n "${out}" ]] || out=$(mktemp -d /tmp/pool_fuzz_long.XXXXXX) || exit 1
out=$(mkdir -p "${out}" && cd "${out}" && pwd) || { echo "long_run: cannot create it" >&2; exit 1; }

read -r -a bazel <<< "${BAZEL:-bazel}"
"${bazel[@]}" build --config=fuzz //tests/fuzz:pool_fuzzer || exit 1
bin=$("${bazel[@]}" info --config=fuzz bazel-bin) || exit 1
cp -f "${bin}/tests/fuzz/pool_fuzzer" "${out}/pool_fuzzer" || exit 1

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  commit+=" (with uncommitted changes)"
fi
counters=$("${out}/pool_fuzzer" -runs=0 2>&1 | grep -m1 -oE '[0-9]+ inline 8-bit counters')

modes=(default perthread)
declare -A pids starts
for mode in "${modes[@]}"; do
  dir="${out}/${mode}"
  rm -rf "${dir}"
  mkdir -p "${dir}/corpus" "${dir}/artifacts"
  cp tests/fuzz/corpus/* "${dir}/corpus/" || exit 1
  mode_env=()
  [[ "${mode}" == default ]] || mode_env=(SYNCPOOL_MODE="${mode}")
  starts[${mode}]=$(date -u +%FT%TZ)
  # The sanitizer options of .bazelrc's asan config, which the fuzz config takes.
  env "${mode_env[@]}" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1 "${out}/pool_fuzzer" -print_final_stats=1 -timeout=30 \
    -max_total_time="${seconds}" -artifact_prefix="${dir}/artifacts/" "$@" "${dir}/corpus" \
    > "${dir}/fuzzer.log" 2>&1 &
  pids[${mode}]=$!
done
echo "long_run: ${modes[*]} for ${seconds} s each, in ${out}"

declare -A rcs
for mode in "${modes[@]}"; do
  wait "${pids[${mode}]}"
  rcs[${mode}]=$?
done
{
  echo "pool_fuzzer long run: ${seconds} s per mode, --config=fuzz (${counters}), ${out}"
  for mode in "${modes[@]}"; do
    rc=${rcs[${mode}]}
    log="${out}/${mode}/fuzzer.log"
    runs=$(grep -E '^Done [0-9]+ runs in' "${log}" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "${log}" | tail -n 1)
    findings=$(ls "${out}/${mode}/artifacts")
    echo "== ${mode}"
    echo "   date:     ${starts[${mode}]} to $(date -u -r "${log}" +%FT%TZ)"
    echo "   commit:   ${commit}"
    echo "   runs:     ${runs:-no 'Done' line (stopped by a finding?)}"
    echo "   coverage: ${cov:-none} (last status line)"
    echo "   corpus:   $(ls "${out}/${mode}/corpus" | wc -l) files" \
      "(from $(ls tests/fuzz/corpus | wc -l) seeds)"
    echo "   exit:     ${rc}"
    if [[ -n "${findings}" ]]; then
      echo "   findings: $(wc -l <<< "${findings}"), in ${out}/${mode}/artifacts/:"
      sed 's/^/     /' <<< "${findings}"
    else
      echo "   findings: none"
    fi
  done
} | tee "${out}/summary.txt"
grep -qE '^   (exit: +[1-9]|findings: [0-9])' "${out}/summary.txt" && exit 1
exit 0
