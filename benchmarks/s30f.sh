#!/bin/bash
# Thirtieth session (nvidia-h200): s30e's profile shows the mma backward's causal D 128 N 16384 kernel reading 678 MB of
# DRAM against FA2's 406 MB (non-causal: level) and waiting on lg_throttle (0.70 against 0.01 a issued instruction):
# its heavy-first groups of 64 MB (4 pairs there) exceed the 50 MB L2. A/B of the group size for the mma column:
# alt1 16 MB, alt2 32 MB, alt3 an A/A copy (64); bf16 causal D 64 / 128, N 4096 / 16384, both build orders.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
for order in shuffled served-last; do
  left=$((T0 + 400 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 200 ? left : 200 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --dtypes bf16 \
    --causal true --build-order $order --alt mma:MMA.HEAVY_GROUP_MB=16,mma:MMA.HEAVY_GROUP_MB=32,mma 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" | tee -a $OUT/bench_backward_graph_mma_group_mb_h200_${D}_s30f.log
done
