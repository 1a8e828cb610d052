#!/bin/bash
O=/tmp/m/out
for r in 1 2 3; do
  for b in m hot8; do
    /tmp/$b/workload_bench --workload_context=0 --benchmark_filter='BM_(Tree|Map)/(syncpool_allocator|mimalloc_allocator)/(1000|10000|100000)/' --benchmark_min_time=0.2 > $O/hot_${b}_$r.txt 2>&1
  done
  /tmp/b070/workload_bench --benchmark_filter='BM_Tree/(syncpool_allocator)/(1000|10000|100000)/' --benchmark_min_time=0.2 > $O/hot_b070_$r.txt 2>&1
done
echo done > $O/ab3.log
