#!/bin/bash
# Thirtieth session (nvidia-h200): DQ_INTERLEAVE (flash_bwd_mma: dQ's product before dK's, the 16 dQ adds spread
# among dK's mmas, FlashAttention-2's interleave; s30g: the adds as one run filled the LSU queue and the loop top waited
# on their registers). The mma GPU tests with it on, then an A/B: alt1 on at every tile dim, alt2 an A/A copy; bf16.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_kernels.DQ_INTERLEAVE=(64,128,256)" timeout 100 python3 -m pytest -q \
  -p no:cacheprovider -n 15 -rf tests/test_backward_gpu.py tests/test_backward_mma_own_gpu.py 2>&1 | tail -6 \
  | tee $OUT/dq_interleave_tests_h200_${D}_s30h.log
for order in shuffled served-last; do
  left=$((T0 + 250 - $(date +%s))); [ $left -gt 40 ] || break
  timeout $(( left < 80 ? left : 80 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --dtypes bf16 \
    --build-order $order --alt mma:MMA.DQ_INTERLEAVE,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_dq_interleave_h200_${D}_s30h.log
done
