#!/bin/bash
O=/tmp/m/out
for r in 1 2 3; do for b in m b61; do
  /tmp/$b/sweep_latency --seconds=3 > $O/sl_${b}_$r.txt 2>&1
done; done
echo done >> $O/sl.log
