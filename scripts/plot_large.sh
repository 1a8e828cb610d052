#!/bin/bash
# Draws docs/tree.png and docs/map.png from a workload_bench CSV of BM_Tree and BM_Map with
# medians (--benchmark_repetitions=3 --benchmark_report_aggregates_only=true
# --benchmark_out_format=csv, as docs/benchmarks.md's "Large temporaries" run):
#
#   bash scripts/plot_large.sh docs/data/large_2cpu_<commit>.csv
#
# Each chart: nanoseconds per node (BM_Tree) or per entry (BM_Map) against the size, one line
# per allocator, 1 thread and 2 threads side by side (with 2 threads, wall time divided by the
# work of both threads: perfect scaling halves it). Needs gnuplot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
in=$1
table=$(mktemp)
trap 'rm -f "$table"' EXIT
# workload allocator size threads ns-per-item, from the median rows.
awk -F, 'NR > 1 && $1 ~ /_median"$/ {
  name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
  n = split(name, part, "/")
  threads = part[n]; sub(/threads:/, "", threads)
  print part[1], part[2], part[3], threads, $3 / part[3]
}' "$in" | sort -k1,1 -k2,2 -k4,4n -k3,3n > "$table"

plot() {  # workload, unit, units, output
  local workload=$1 unit=$2 units=$3 out=$4 plots1="" plots2=""
  for alloc in $(awk -v w="$workload" '$1 == w { print $2 }' "$table" | sort -u); do
    plots1+="${plots1:+, }'< awk \"\\\$1 == \\\"$workload\\\" && \\\$2 == \\\"$alloc\\\" && \\\$4 == 1\" $table' using 3:5 with linespoints title '$alloc'"
    plots2+="${plots2:+, }'< awk \"\\\$1 == \\\"$workload\\\" && \\\$2 == \\\"$alloc\\\" && \\\$4 == 2\" $table' using 3:5 with linespoints title '$alloc'"
  done
  gnuplot <<GP
set terminal pngcairo size 1100,450 font ',10' noenhanced
set output '$out'
set multiplot layout 1,2 title '$workload (2-vCPU machine, medians of 3, wall time per $unit; from $in)'
set logscale xy
set xlabel '$units'
set ylabel 'ns per $unit'
set key top left font ',9'
set grid
set title '1 thread'
plot $plots1
set title '2 threads'
plot $plots2
unset multiplot
GP
  echo "wrote $out"
}
plot BM_Tree node nodes docs/tree.png
plot BM_Map entry entries docs/map.png
