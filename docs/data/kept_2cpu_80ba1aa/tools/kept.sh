#!/bin/bash
# Kept figures of the locality issue at HEAD (/tmp/m) against 070b0d8 (/tmp/b070), alternated.
O=/tmp/m/out; mkdir -p $O
NR=GLIBC_TUNABLES=glibc.pthread.rseq=0
PT='BM_Seed|BM_RoundTrip/(syncpool|syncpool_allocator|new_delete|synchronized_pool)/1024|BM_Churn/(syncpool|new_delete)/|BM_PerCpu'
RS='BM_Seed|BM_RoundTrip/(syncpool|syncpool_allocator|new_delete)/(64|1024)/|BM_Churn/(syncpool|new_delete)/|BM_Miss/syncpool/'
echo "start $(date -u +%FT%TZ) $(uptime)" > $O/log
for r in 1 2 3; do
 for b in m b070; do
  env $NR /tmp/$b/pool_bench --benchmark_filter="$PT" --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true > $O/pt_pool_${b}_$r.txt 2>&1
  env $NR /tmp/$b/workload_bench --benchmark_filter='BM_(Tree|Request)/(std|syncpool_allocator)/' --benchmark_min_time=0.3 > $O/pt_work_${b}_$r.txt 2>&1
  /tmp/$b/pool_bench --benchmark_filter="$RS" --benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true > $O/rseq_pool_${b}_$r.txt 2>&1
 done
 echo "round $r $(date -u +%T) $(uptime)" >> $O/log
done
for r in 1 2 3 4 5; do
 /tmp/m/workload_bench --workload_context=0 --benchmark_min_time=0.2 --benchmark_filter='BM_Tree/(syncpool_allocator|mimalloc_allocator|bump|bump_percpu)/(100|1000|10000|100000|1000000)/' > $O/scale_$r.txt 2>&1
 echo "scale $r $(date -u +%T) $(uptime)" >> $O/log
done
/tmp/m/sweep_latency --seconds=4 > $O/sweep_latency.txt 2>&1
env $NR /tmp/m/sweep_latency --seconds=4 > $O/perthread_sweep_latency.txt 2>&1
for i in 1 2 3; do /tmp/m/burst --resources=syncpool > $O/burst_$i.txt 2>&1; done
/tmp/m/idle > $O/idle.txt 2>&1
echo "end $(date -u +%FT%TZ) $(uptime)" >> $O/log
