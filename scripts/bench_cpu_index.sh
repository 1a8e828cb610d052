#!/usr/bin/env bash
# The rseq fast path and the large trees by the index of the caches' columns (SYNCPOOL_CPU_ID),
# in one run: processes alternated, `rounds` of each, one benchmark process per variant:
#   cid    this build, SYNCPOOL_CPU_ID=auto (concurrency ids where the kernel has mm_cid)
#   cpu    this build, SYNCPOOL_CPU_ID=cpu
#   base   (optional) another build's bazel-bin, for the fast path before the change
# Then the cached bytes of T threads hopping over every CPU (bench/cpu_index), both indexes.
# Copies the binaries first (OUT_DIR/bin), so that the run measures one build throughout.
# Prints a table per benchmark: fastest and median over the processes (each process reports
# the median of its 3 repetitions). Raw output goes to OUT_DIR.
#   bash scripts/bench_cpu_index.sh OUT_DIR [BASE_BAZEL_BIN] [ROUNDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bench_cpu_index.sh OUT_DIR [BASE_BAZEL_BIN] [ROUNDS]}"
base="${2:-}"
rounds="${3:-6}"
mkdir -p "${out}"
bazel build -c opt //bench:pool_bench //bench:workload_bench //bench:cpu_index >/dev/null 2>&1
# Copies: a later bazel build must not change the binaries under the run.
mkdir -p "${out}/bin"
cp -f bazel-bin/bench/pool_bench bazel-bin/bench/workload_bench bazel-bin/bench/cpu_index \
  "${out}/bin/"
fast_filter='BM_Seed_Pool/real_time/threads:1|BM_PerCpu_PopPush/real_time/threads:1|BM_RoundTrip/(syncpool|syncpool_allocator)/(64|1024)/real_time/threads:1'
tree_filter='BM_Tree/syncpool_allocator/(1000|100000)/'
common=(--benchmark_min_time=0.2 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true)

variants=(cid cpu)
[[ -n "${base}" ]] && variants+=(base)
for ((r = 1; r <= rounds; ++r)); do
  for v in "${variants[@]}"; do
    case "${v}" in
      cid) env=(SYNCPOOL_CPU_ID=auto) bin="${out}/bin" ;;
      cpu) env=(SYNCPOOL_CPU_ID=cpu) bin="${out}/bin" ;;
      base) env=() bin="${base}/bench" ;;
    esac
    env "${env[@]}" "${bin}/pool_bench" "${common[@]}" --benchmark_filter="${fast_filter}" \
      >"${out}/fast_${v}_${r}.txt" 2>&1
    if [[ "${v}" != base ]]; then
      env "${env[@]}" "${out}/bin/workload_bench" --workload_context=0 "${common[@]}" \
        --benchmark_filter="${tree_filter}" >"${out}/tree_${v}_${r}.txt" 2>&1
    fi
  done
done

# 1 KiB blocks (spans behind small caches) and 16 KiB blocks (no spans: the caches grow to
# the working set), 1 and 2 threads.
for v in cid cpu; do
  for bytes in 1024 16384; do
    for t in 1 2; do
      env SYNCPOOL_CPU_ID="$([[ ${v} == cid ]] && echo auto || echo cpu)" \
        "${out}/bin/cpu_index" "${t}" 256 "${bytes}" >>"${out}/hop_${v}.txt"
    done
  done
  # The default options: the default sweeper's thread is a thread of the process too.
  env SYNCPOOL_CPU_ID="$([[ ${v} == cid ]] && echo auto || echo cpu)" \
    "${out}/bin/cpu_index" 1 256 1024 10 default >>"${out}/hop_${v}.txt"
done

python3 - "${out}" "${variants[@]}" <<'EOF'
import glob, re, statistics, sys
out, variants = sys.argv[1], sys.argv[2:]
rows = {}
for v in variants:
    for kind in ("fast", "tree"):
        for path in glob.glob(f"{out}/{kind}_{v}_*.txt"):
            for line in open(path):
                m = re.match(r"(\S+)_median\s+([\d.]+) (ns|us|ms)", line)
                if not m:
                    continue
                scale = {"ns": 1, "us": 1e3, "ms": 1e6}[m.group(3)]
                name = m.group(1).replace("/real_time", "").replace("/threads:1", "")
                rows.setdefault(name, {}).setdefault(v, []).append(float(m.group(2)) * scale)
def fmt(ns):
    return f"{ns:.2f} ns" if ns < 1e3 else (f"{ns/1e3:.1f} us" if ns < 1e6 else f"{ns/1e6:.2f} ms")
print("| benchmark | " + " | ".join(f"{v}: fastest / median of {len(next(iter(rows.values())).get(v, []))}" for v in variants) + " | cid / cpu (medians) |")
print("| --- " * (len(variants) + 2) + "|")
for name in sorted(rows):
    cells = []
    for v in variants:
        xs = rows[name].get(v)
        cells.append(f"{fmt(min(xs))} / {fmt(statistics.median(xs))}" if xs else "-")
    ratio = statistics.median(rows[name]["cid"]) / statistics.median(rows[name]["cpu"])
    print(f"| `{name}` | " + " | ".join(cells) + f" | {ratio:.2f} |")
for v in ("cid", "cpu"):
    print(f"\n{v}:")
    print(open(f"{out}/hop_{v}.txt").read().rstrip())
EOF
