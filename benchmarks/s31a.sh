#!/bin/bash
# Prepared in the thirtieth session for the next (nvidia-h200; not run): HEAVY_BY_BATCH (flash_bwd_mma's heavy-first
# causal blocks on a (K/V head, K/V tile, batch) grid: uniform loop counters, no write-after-read on the dQ adds'
# registers, and D 128 causal with DQ_INTERLEAVE spill-free; s30g, NOTES thirtieth session). Its GPU tests, then an
# A/B on the causal rows: alt1 HEAVY_BY_BATCH, alt2 with DQ_INTERLEAVE at every tile dim too, alt3 an A/A copy.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 12 -rf tests/test_backward_heavy_by_batch_gpu.py 2>&1 | tail -8 \
  | tee $OUT/heavy_by_batch_tests_h200_${D}_s31a.log
for order in shuffled served-last; do
  left=$((T0 + 500 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 170 ? left : 170 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --causal true \
    --build-order $order --alt mma:MMA.HEAVY_BY_BATCH,mma:MMA.HEAVY_BY_BATCH+MMA.DQ_INTERLEAVE,mma 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" | tee -a $OUT/bench_backward_graph_heavy_by_batch_h200_${D}_s31a.log
done
