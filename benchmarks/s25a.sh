#!/bin/bash
# Twenty-fifth session (nvidia-h200): flash_bwd_mma's causal block orders (ops/backward_kernels.HEAVY_FIRST, DOWNWARD):
# their float64 GPU tests, then graph replay of the causal rows with the served mma tile switched (alt1-3) against
# its A/A copy (alt4).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_order_gpu.py \
  > $OUT/mma_order_tests_h200_${D}_s25a.log 2>&1; tail -3 $OUT/mma_order_tests_h200_${D}_s25a.log
timeout 330 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --build-order fixed \
  --alt mma:MMA.HEAVY_FIRST,mma:MMA.DOWNWARD,mma:MMA.HEAVY_FIRST+MMA.DOWNWARD,mma 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_mma_order_h200_${D}_s25a.log
