#!/bin/bash
# Twenty-seventh session (nvidia-h200): CAUSAL_WALK now hands the heavy-first blocks out from a counter (s27a: static
# rounds 4-11 % behind the grid); its GPU tests, then the same A/B as s27a (walked, unwalked, A/A copy of the served).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_wgmma_causal_walk_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py > $OUT/causal_walk_tests_h200_${D}_s27b.log 2>&1
tail -3 $OUT/causal_walk_tests_h200_${D}_s27b.log
grep -q " passed" $OUT/causal_walk_tests_h200_${D}_s27b.log && ! grep -q "failed\|error" $OUT/causal_walk_tests_h200_${D}_s27b.log || exit 1
for order in shuffled served-last; do
  timeout 160 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order $order \
    --alt 64x128x12x2:CAUSAL_WALK,64x128x12x2,64x64x8x2 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_causal_walk_h200_${D}_s27b.log
done
