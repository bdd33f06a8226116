#!/bin/bash
# Twenty-fifth session (nvidia-h200): heavy-first in groups of 64 MB of query rows served (both templates; flash_bwd_wgmma
# at D 64 and 128, flash_bwd_mma at 64/128/256). Its GPU tests, then the A/B the other way round on the causal rows:
# copies with every pair at once (HEAVY_GROUP_MB=100000, the order served until s25c) and with blockIdx.x order
# (-HEAVY_FIRST), against A/A copies of the served tiles.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_order_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py > $OUT/heavy_groups_served_tests_h200_${D}_s25e.log 2>&1
tail -3 $OUT/heavy_groups_served_tests_h200_${D}_s25e.log
G="grep -v -i warn\|no.tuned.config\|return.Impl"
W=64x128x12x2
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 128 --build-order fixed \
  --alt $W:MMA.HEAVY_GROUP_MB=100000,$W:-HEAVY_FIRST,$W,mma:MMA.HEAVY_GROUP_MB=100000,mma:-MMA.HEAVY_FIRST,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_heavy_groups_served_d128_h200_${D}_s25e.log
W=64x64x8x2
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order fixed \
  --alt $W:-HEAVY_FIRST,$W,$W:MMA.HEAVY_GROUP_MB=24,mma:-MMA.HEAVY_FIRST,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_heavy_groups_served_d64_h200_${D}_s25e.log
