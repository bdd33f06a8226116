#!/bin/bash
# Thirty-first session (nvidia-h200), in the device time left (~340 s): DQ_INTERLEAVE_SPLIT (whole query tiles add dQ
# without the row tests, a second copy of dK's product; spill-free at the served D 64 / 128 tiles, NVRTC 13.0). The
# mma GPU tests with it on at D 64 and 128 (tails and whole tiles; the by-batch D 128 causal tests too), then an A/B
# on every bf16 bar row: alt1 on, alt2 an A/A copy.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_mma_switches.DQ_INTERLEAVE_SPLIT=(64,128)" timeout 90 python3 -m pytest \
  -q -p no:cacheprovider -n 15 -rf tests/test_backward_gpu.py tests/test_backward_heavy_by_batch_gpu.py 2>&1 | tail -6 \
  | tee $OUT/dq_interleave_split_tests_h200_${D}_s31g.log
for order in served-last shuffled; do
  left=$((T0 + ${END:-230} - $(date +%s))); [ $left -gt 40 ] || break
  timeout $(( left < 80 ? left : 80 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --dtypes bf16 \
    --build-order $order --alt mma:MMA.DQ_INTERLEAVE_SPLIT,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_dq_interleave_split_h200_${D}_s31g.log
done
