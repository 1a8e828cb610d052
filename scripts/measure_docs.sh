#!/usr/bin/env bash
# Measures again what docs/benchmarks.md and docs/memory.md quote, on this machine, into one
# directory: every benchmark and tool of bench/ with the flags the documents name, the
# LD_PRELOAD peers (jemalloc, gperftools' tcmalloc), SYNCPOOL_DEBUG=1, the per-thread mode
# (GLIBC_TUNABLES=glibc.pthread.rseq=0), the burst experiments of docs/memory.md (also with a
# `yes` per CPU beside them), Go's sync.Pool (scripts/bench_go.sh), the fault injection's points
# and runs (docs/reliability.md), and the two fuzzer tests
# as CI runs them (the runs, seconds and coverage that README and docs/reliability.md quote).
#
#   bash scripts/measure_docs.sh OUT_DIR      # about 40 minutes on 2 vCPUs (10 the fuzzer)
#
# The binaries are built once (`bazel build -c opt //bench/...`) and copied to OUT_DIR/bin, so
# that every step runs the same build. OUT_DIR/commands.txt lists each step: its command, when
# it started and ended, and its exit status; each step's output is the file it names. Run it
# on a quiet machine: other load moves every figure (docs/benchmarks.md says by how much).
# Installs what is missing (scripts/install_deps.sh). Works from any directory.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
(($# == 1)) || { echo "usage: bash scripts/measure_docs.sh OUT_DIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "measure_docs: cannot create $1" >&2; exit 1; }

bash scripts/install_deps.sh || exit 1
bazel build -c opt //bench/... || exit 1
bin="${out}/bin"
mkdir -p "${bin}"
for tool in pool_bench workload_bench demo burst retention idle sweep_latency; do
  cp -f "bazel-bin/bench/${tool}" "${bin}/" || exit 1
done

lib=/usr/lib/x86_64-linux-gnu
commands="${out}/commands.txt"
{ echo "# $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"
  echo "# $(uptime)"; } > "${commands}"
failed=0
# step FILE [VAR=value...] COMMAND...: runs COMMAND with the variables set, output to FILE.
step() {
  local file=$1
  shift
  echo "$(date +%T) ${file}: $*" >> "${commands}"
  env "$@" > "${out}/${file}" 2>&1
  local rc=$?
  echo "$(date +%T) ${file}: exit ${rc}" >> "${commands}"
  ((rc == 0)) || failed=1
}

csv3=(--benchmark_repetitions=3 --benchmark_format=csv)
peers='BM_Seed_(Alloc|Pool)|BM_RoundTrip/(new_delete|syncpool|syncpool_allocator)/(1024|65536)|BM_Churn/(new_delete|syncpool)/'
debug='BM_Seed_Pool|BM_RoundTrip/syncpool(_allocator)?/1024|BM_Churn/syncpool/'
perthread='BM_Seed|BM_RoundTrip/(syncpool|syncpool_allocator|new_delete|synchronized_pool)/1024|BM_Churn/(syncpool|new_delete)/|BM_PerCpu'
no_rseq=GLIBC_TUNABLES=glibc.pthread.rseq=0
no_delay=MIMALLOC_DECOMMIT_DELAY=0

# docs/benchmarks.md
step pool_bench.csv "${bin}/pool_bench" "${csv3[@]}"
step demo.txt "${bin}/demo"
step workload.txt "${bin}/workload_bench" --benchmark_min_time=0.3
step peers_glibc.csv "${bin}/pool_bench" --benchmark_filter="${peers}" "${csv3[@]}"
step peers_jemalloc.csv LD_PRELOAD="${lib}/libjemalloc.so.2" \
  "${bin}/pool_bench" --benchmark_filter="${peers}" "${csv3[@]}"
step peers_tcmalloc.csv LD_PRELOAD="${lib}/libtcmalloc.so.4" \
  "${bin}/pool_bench" --benchmark_filter="${peers}" "${csv3[@]}"
step debug_off.csv "${bin}/pool_bench" --benchmark_filter="${debug}" "${csv3[@]}"
step debug_on.csv SYNCPOOL_DEBUG=1 "${bin}/pool_bench" --benchmark_filter="${debug}" "${csv3[@]}"
step perthread_pool_bench.txt "${no_rseq}" "${bin}/pool_bench" --benchmark_filter="${perthread}" \
  --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
step perthread_buffer.txt "${no_rseq}" "${bin}/pool_bench" --benchmark_filter=BM_Buffer
step perthread_workload.txt "${no_rseq}" "${bin}/workload_bench" --benchmark_min_time=0.3
step perthread_sweep_latency.txt "${no_rseq}" "${bin}/sweep_latency" --seconds=4
step sweep_latency.txt "${bin}/sweep_latency" --seconds=4
# Large temporaries against the direct peers, up to 1,000,000 (and the charts' data).
step large.csv "${bin}/workload_bench" --workload_context=0 --benchmark_min_time=0.2 \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=csv \
  --benchmark_filter='BM_(Tree|Map)/(std|syncpool_allocator|mimalloc_allocator|tcmalloc_allocator|jemalloc_allocator|bump)/'
# The workloads under LD_PRELOAD peers (its own rounds and summary).
step preload.txt bash scripts/bench_preload.sh "${out}/preload" 3

# The caches by concurrency id and by CPU id: fast path, trees and cached bytes (without a
# base build: pass one to scripts/bench_cpu_index.sh by hand to compare two commits).
step cpu_index.txt bash scripts/bench_cpu_index.sh "${out}/cpu_index" "" 6

# docs/memory.md
step burst.txt "${bin}/burst" --csv="${out}/memory.csv"
for i in 1 2 3; do step "burst_syncpool_${i}.txt" "${bin}/burst" --resources=syncpool; done
step burst_strings.txt "${bin}/burst" --resources=string_pool,string_new
step burst_strings_nomax.txt "${bin}/burst" --resources=string_pool --max_object_mib=0
step burst_peak64.txt "${bin}/burst" --resources=syncpool --peak_mib=64
step burst_new_delete_exit.txt "${bin}/burst" --resources=new_delete --workers_exit
for t in 1 2; do
  step "retention${t}.txt" "${bin}/retention" --threads="${t}"
  step "retention${t}_refill0.txt" SYNCPOOL_REFILL_BYTES=0 "${bin}/retention" --threads="${t}"
done
step idle.txt "${bin}/idle"
# The peak resident set of a 1,000,000-node tree, one process per allocator and round.
for r in 1 2 3; do
  for alloc in syncpool_allocator mimalloc_allocator tcmalloc_allocator jemalloc_allocator std; do
    step "tree_rss_${alloc}_${r}.txt" "${bin}/workload_bench" --workload_context=0 \
      --benchmark_min_time=0.3 --benchmark_filter="BM_Tree/${alloc}/1000000/real_time/threads:1\$"
  done
done
# The investigation of what returns mimalloc's memory (docs/memory.md's table, row by row).
both=--resources=syncpool,mimalloc
step inv_default.txt "${bin}/burst" "${both}"
step inv_free_others.txt "${bin}/burst" "${both}" --free_others
step inv_owners_collect.txt "${bin}/burst" "${both}" --owners_collect
step inv_free_others_owners_collect.txt "${bin}/burst" "${both}" --free_others --owners_collect
step inv_delay0.txt "${no_delay}" "${bin}/burst" "${both}"
step inv_delay0_free_others.txt "${no_delay}" "${bin}/burst" "${both}" --free_others
step inv_delay0_owners_collect.txt "${no_delay}" "${bin}/burst" "${both}" --owners_collect
step inv_collect_after_sweep.txt "${bin}/burst" --resources=syncpool --collect_after_sweep
step inv_delay0_collect_after_sweep.txt "${no_delay}" "${bin}/burst" --resources=syncpool \
  --collect_after_sweep
step inv_workers_exit.txt "${bin}/burst" "${both}" --workers_exit
step inv_delay0_workers_exit.txt "${no_delay}" "${bin}/burst" "${both}" --workers_exit
step inv_workers_exit_collect.txt "${bin}/burst" --resources=syncpool --workers_exit \
  --collect_after_sweep
step inv_delay0_workers_exit_collect.txt "${no_delay}" "${bin}/burst" --resources=syncpool \
  --workers_exit --collect_after_sweep
# The burst beside a CPU hog per CPU, at the default limits and at the old fixed ones.
hogs=()
for ((i = 0; i < $(nproc); i++)); do
  yes > /dev/null &
  hogs+=($!)
done
for i in 1 2 3; do step "burst_syncpool_hogs_${i}.txt" "${bin}/burst" --resources=syncpool; done
for i in 1 2 3; do
  step "burst_syncpool_hogs_fixed_${i}.txt" SYNCPOOL_PER_CPU_CLASS_BYTES=65536 \
    SYNCPOOL_MAX_BLOCKS_PER_CLASS=128 "${bin}/burst" --resources=syncpool
done
kill "${hogs[@]}"
wait "${hogs[@]}" 2>/dev/null

# Go's sync.Pool (docs/benchmarks.md)
step go.txt SYNCPOOL_BENCH_COUNT=3 bash scripts/bench_go.sh

# The fuzzer, as scripts/test.sh runs it (10,000 runs each, tests/fuzz/BUILD.bazel), never
# from the cache: its whole output, then from each test's log libFuzzer's final "Done N runs in
# S second(s)" line and the coverage of its last status line ("cov: ... ft: ...").
step fuzzer.txt bazel test --config=fuzz --nocache_test_results //tests/fuzz:pool_fuzzer_test \
  //tests/fuzz:pool_fuzzer_perthread_test
for test in pool_fuzzer_test pool_fuzzer_perthread_test; do
  step "${test}_runs.txt" bash -c 'grep -E "^Done [0-9]+ runs in" "$1" &&
    grep -E "^#[0-9]+.* cov: [0-9]+ ft: [0-9]+" "$1" | tail -n 1' _ \
    "bazel-testlogs/tests/fuzz/${test}/test.log"
done

# Fault injection (docs/reliability.md): the points K and the runs of each option set, both
# modes, never from the cache.
step fault_injection.txt bazel test --nocache_test_results \
  //tests/reliability:fault_injection_test //tests/reliability:fault_injection_test_perthread
for test in fault_injection_test fault_injection_test_perthread; do
  step "${test}_points.txt" grep -E "fault points K = " \
    "bazel-testlogs/tests/reliability/${test}/test.log"
done

echo "# $(uptime)" >> "${commands}"
if ((failed)); then
  echo "measure_docs: some steps failed (see ${commands})" >&2
  exit 1
fi
echo "measure_docs: done; the outputs are in ${out}, the commands in ${commands}"
