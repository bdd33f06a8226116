#!/bin/bash
# Twenty-sixth session (nvidia-h200): the block-order GPU tests after the s25 review (s25g's log did not survive), then
# s25e's A/B the other way round (every pair at once, blockIdx.x order, and groups of 128 MB against A/A copies of
# the served 64 MB groups) on the causal rows.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_order_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py tests/test_backward_gpu.py > $OUT/order_tests_h200_${D}_s26a.log 2>&1
tail -3 $OUT/order_tests_h200_${D}_s26a.log
G="grep -v -i warn\|no.tuned.config\|return.Impl"
W=64x128x12x2
timeout 180 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 128 --build-order fixed \
  --alt $W:MMA.HEAVY_GROUP_MB=100000,$W:-HEAVY_FIRST,$W:MMA.HEAVY_GROUP_MB=128,$W,mma:-MMA.HEAVY_FIRST,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_heavy_groups_served_d128_h200_${D}_s26a.log
W=64x64x8x2
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order fixed \
  --alt $W:-HEAVY_FIRST,$W:MMA.HEAVY_GROUP_MB=128,$W,mma:-MMA.HEAVY_FIRST,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_heavy_groups_served_d64_h200_${D}_s26a.log
