#!/usr/bin/env bash
# The LD_PRELOAD peers on the workloads: //bench:workload_bench's `std` rows (std::allocator,
# that is operator new over whatever malloc the process has) under glibc's malloc and under
# mimalloc, gperftools' tcmalloc and jemalloc preloaded, beside a plain process's
# `syncpool_allocator` and `mimalloc_allocator` rows (the direct peer). A malloc replaced by
# LD_PRELOAD is the whole process's, so each configuration is its own process; the rounds
# alternate the configurations, and the summary gives each benchmark's median over the rounds.
#
#   bash scripts/bench_preload.sh OUT_DIR [ROUNDS]     (ROUNDS: 3 by default)
#
# SIZES (environment) picks the workload sizes: '(100|1000|10000|100000|4|64)' by default,
# every size but the 1,000,000-node tree and map (minutes per process); SIZES='[0-9]+' runs all.
# Writes OUT_DIR/<config>_<round>.txt (Google Benchmark's console output) and prints the
# summary, also written to OUT_DIR/summary.txt. Installs nothing: run scripts/install_deps.sh
# first (it installs the peers' packages).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bench_preload.sh OUT_DIR [ROUNDS]}"
rounds="${2:-3}"
sizes="${SIZES:-(100|1000|10000|100000|4|64)}"
mkdir -p "${out}"

lib="/usr/lib/$(gcc -print-multiarch)"
declare -A preload=(
  [glibc]=""
  [mimalloc]="${lib}/libmimalloc.so.2"
  [tcmalloc]="${lib}/libtcmalloc_minimal.so.4"
  [jemalloc]="${lib}/libjemalloc.so.2"
)
for name in mimalloc tcmalloc jemalloc; do
  if [[ ! -e "${preload[${name}]}" ]]; then
    echo "bench_preload: ${preload[${name}]} is missing (scripts/install_deps.sh installs it)" >&2
    exit 1
  fi
done

bazel build -c opt //bench:workload_bench
bin="$(bazel info -c opt bazel-bin)/bench/workload_bench"
common=(--workload_context=0 --benchmark_min_time=0.3)

for ((r = 1; r <= rounds; ++r)); do
  echo "round ${r} of ${rounds}: syncpool and the direct mimalloc" >&2
  "${bin}" "${common[@]}" \
    --benchmark_filter="BM_(Tree|Map|Request)/(syncpool_allocator|mimalloc_allocator)/${sizes}/" \
    > "${out}/direct_${r}.txt" 2>&1
  for name in glibc mimalloc tcmalloc jemalloc; do
    echo "round ${r} of ${rounds}: std under ${name}" >&2
    env ${preload[${name}]:+LD_PRELOAD="${preload[${name}]}"} "${bin}" "${common[@]}" \
      --benchmark_filter="BM_(Tree|Map|Request)/std/${sizes}/" > "${out}/std_${name}_${r}.txt" 2>&1
  done
done

# The summary: benchmark, configuration, median time over the rounds (ns), one line each.
for f in "${out}"/direct_*.txt "${out}"/std_*.txt; do
  config="$(basename "${f}" .txt)"
  config="${config%_*}"
  awk -v config="${config}" '/^BM_/ && $3 == "ns" { print $1, config, $2 }' "${f}"
done | sort -k1,1 -k2,2 -k3,3n | awk '
  function flush() {
    if (n > 0) printf "%-58s %-14s %14.0f\n", key1, key2, (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
    n = 0
  }
  { if ($1 != key1 || $2 != key2) { flush(); key1 = $1; key2 = $2 } v[++n] = $3 }
  END { flush() }' | tee "${out}/summary.txt"
