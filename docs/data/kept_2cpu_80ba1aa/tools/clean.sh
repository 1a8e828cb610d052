#!/bin/bash
O=/tmp/m/out
for r in 1 2 3 4; do for b in fix2 m; do
  /tmp/$b/workload_bench --workload_context=0 --benchmark_filter='BM_(Tree|Map)/(syncpool_allocator|mimalloc_allocator)/(1000|10000|100000)/' --benchmark_min_time=0.2 > $O/trees5_${b}_$r.txt 2>&1
done; done
for r in 1 2 3 4 5 6; do for b in fix fix2 m; do /tmp/$b/sweep_latency --seconds=3 > $O/sl6_${b}_$r.txt 2>&1; done; done
echo done > $O/clean.log
