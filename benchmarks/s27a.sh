#!/bin/bash
# Twenty-seventh session (nvidia-h200): CAUSAL_WALK's GPU tests (and the walk's and TAIL_SPLIT's, for the walk's
# no-K/V-load of a block without query tiles), then the A/B at D 64 causal: the two-consumer tile walked, the same
# tile on the heavy-first grid, an A/A copy of the served one-consumer tile; both build orders.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_wgmma_causal_walk_gpu.py \
  tests/test_backward_wgmma_persistent_gpu.py tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py > $OUT/causal_walk_tests_h200_${D}_s27a.log 2>&1
tail -3 $OUT/causal_walk_tests_h200_${D}_s27a.log
for order in shuffled served-last; do
  timeout 160 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order $order \
    --alt 64x128x12x2:CAUSAL_WALK,64x128x12x2,64x64x8x2 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_causal_walk_h200_${D}_s27a.log
done
