#!/bin/bash
O=/tmp/m/out
for r in 1 2 3 4; do for b in m b070; do
  /tmp/$b/workload_bench --benchmark_filter='BM_Tree/(std|syncpool_allocator)/(1000000)/' --benchmark_min_time=0.2 > $O/rbig_${b}_$r.txt 2>&1
  /tmp/$b/workload_bench --benchmark_filter='BM_Tree/(syncpool_allocator)/(100000)/real_time/threads:1$' --benchmark_min_time=0.2 > $O/rone_${b}_$r.txt 2>&1
done; done
echo done > $O/ab2.log
