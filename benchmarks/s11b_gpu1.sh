#!/bin/bash
# The eleventh session's second call, GPU 1 part (run by benchmarks/suite_beside_x2.sh with $OUT set): three
# off-by-default switches, each through benchmarks/ab_run.sh (its float64 GPU tests, then, if they all pass, its A/B):
# ops/backward_wgmma.HEAVY_FIRST, the forward's idle-warpgroup skip and the forward's causal tail split.
for part in hf:backward_heavy_first_run.sh fs:wgmma_idle_rows_run.sh ts:wgmma_tail_split_run.sh; do
    dir=$OUT/${part%%:*}; mkdir -p $dir
    echo "===== ${part#*:}"
    OUT=$dir bash benchmarks/${part#*:} 2>&1 | tail -40
done
