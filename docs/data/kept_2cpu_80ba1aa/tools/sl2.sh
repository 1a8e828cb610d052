#!/bin/bash
O=/tmp/m/out
for r in 1 2 3 4; do for b in m b00; do
  /tmp/$b/sweep_latency --seconds=3 > $O/sl2_${b}_$r.txt 2>&1
done; done
echo done > $O/sl2.log
