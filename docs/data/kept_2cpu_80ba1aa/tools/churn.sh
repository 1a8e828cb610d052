#!/bin/bash
O=/tmp/m/out
for r in 1 2 3 4 5; do for b in m b070; do
  /tmp/$b/pool_bench --benchmark_filter='BM_Churn/syncpool/' --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true > $O/churn_${b}_$r.txt 2>&1
done; done
echo done > $O/churn.log
