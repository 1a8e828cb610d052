#!/bin/bash
O=/tmp/m/out
for r in 1 2 3 4 5; do for b in fix2 m b00; do
  /tmp/$b/sweep_latency --seconds=3 > $O/sl4_${b}_$r.txt 2>&1
done; done
for r in 1 2 3; do for b in fix2 m; do
  /tmp/$b/burst --resources=syncpool > $O/burst4_${b}_$r.txt 2>&1
done; done
for r in 1 2 3 4; do for b in fix2 m; do
  /tmp/$b/workload_bench --workload_context=0 --benchmark_filter='BM_(Tree|Map)/(syncpool_allocator|mimalloc_allocator)/(1000|10000|100000)/' --benchmark_min_time=0.2 > $O/trees4_${b}_$r.txt 2>&1
done; done
echo done > $O/sl4.log
