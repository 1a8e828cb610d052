#!/bin/bash
# Draws the memory chart of docs/memory.md from the CSV bench/burst writes with --csv
# (resource,ms_since_idle,rss_mib: one row per sample of the resident set):
#
#   bazel run -c opt //bench:burst -- --csv=docs/memory.csv
#   bash scripts/plot_memory.sh docs/memory.csv docs/memory.png [SWEEP_MS] [IDLE_INTERVALS]
#
# One line per resource, the resident set against the time since all threads went idle, with
# a mark at going idle and at each of the IDLE_INTERVALS syncpool sweeps after it (burst's
# --sweep_ms and --idle_intervals; 100 and 5 by default, as burst's). Needs gnuplot.
set -euo pipefail
in=$1
out=$2
sweep_ms=${3:-100}
idle_intervals=${4:-5}
# The resources, in the order of the CSV.
names=$(awk -F, 'NR > 1 && !seen[$1]++ { printf "%s%s", sep, $1; sep = " " }' "$in")
arrows=""
for ((k = 0; k <= idle_intervals; ++k)); do
  color=$([ "$k" -eq 0 ] && echo black || echo gray50)
  arrows+="set arrow from $((k * sweep_ms)), graph 0 to $((k * sweep_ms)), graph 1 nohead dt 3 lc rgb '$color'"$'\n'
done
gnuplot <<GP
set terminal pngcairo size 1100,650 noenhanced
set output '$out'
set datafile separator ','
set title 'Resident set during a burst and after all threads went idle (syncpool sweeps every $sweep_ms ms)'
set xlabel 'ms since all threads went idle'
set ylabel 'resident set (MiB)'
set grid
set key outside right top
set yrange [0:*]
$arrows
plot for [r in '$names'] '$in' using 2:(strcol(1) eq r ? \$3 : NaN) with lines lw 2 title r
GP
echo "wrote $out"
