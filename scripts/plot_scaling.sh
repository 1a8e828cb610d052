#!/bin/bash
# Draws the scaling chart of docs/benchmarks.md from a pool_bench CSV run with several thread
# counts (pool_bench --syncpool_threads=1,2,4,8,16 --benchmark_format=csv ...):
#
#   bash scripts/plot_scaling.sh docs/data/scaling_16cpu_c1516d1.csv docs/scaling.png
#
# For each benchmark, the fastest of its repetitions at each thread count; the chart shows
# aggregate throughput relative to one thread (1-thread time / n-thread time, since every
# benchmark uses real time divided by the iterations of all threads). Needs gnuplot.
set -euo pipefail
in=$1
out=$2
table=$(mktemp)
trap 'rm -f "$table"' EXIT
# name,threads,min_time for every repetition row (aggregates skipped).
awk -F, 'NR > 1 && $1 !~ /_(mean|median|stddev|cv)"$/ && $1 ~ /threads:/ {
  name = $1; gsub(/"/, "", name)
  threads = name; sub(/.*threads:/, "", threads)
  sub(/\/real_time\/threads:[0-9]+$/, "", name)
  key = name SUBSEP threads
  if (!(key in best) || $3 + 0 < best[key]) best[key] = $3 + 0
  names[name] = 1; counts[threads + 0] = 1
} END {
  for (name in names) {
    base = best[name SUBSEP 1]
    for (t in counts) if ((name SUBSEP t) in best) print name, t, base / best[name SUBSEP t]
  }
}' "$in" | sort -k1,1 -k2,2n > "$table"
plots=""
for name in $(cut -d' ' -f1 "$table" | sort -u); do
  plots+="${plots:+, }'< grep \"^$name \" $table' using 2:3 with linespoints title '$name'"
done
gnuplot <<GP
set terminal pngcairo size 1000,650 noenhanced
set output '$out'
set title 'Aggregate throughput relative to one thread (16-CPU machine)'
set xlabel 'threads'
set ylabel 'speedup'
set logscale x 2
set xtics (1, 2, 4, 8, 16)
set xrange [0.9:18]
set key left top font ',9'
set grid
plot x with lines dashtype 2 lc rgb 'gray' title 'linear', $plots
GP
echo "wrote $out"
