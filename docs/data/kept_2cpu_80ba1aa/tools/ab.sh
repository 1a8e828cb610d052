#!/bin/bash
O=/tmp/m/out
for r in 1 2 3 4; do for b in m b070; do
  /tmp/$b/workload_bench --benchmark_filter='BM_Tree/(std|syncpool_allocator)/(100|1000|10000|100000)/' --benchmark_min_time=0.2 > $O/rtree_${b}_$r.txt 2>&1
done; done
echo done > $O/ab.log
