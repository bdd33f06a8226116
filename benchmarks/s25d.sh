#!/bin/bash
# Twenty-fifth session (nvidia-h200): HEAVY_BY_BATCH served provisionally; HEAVY_GROUP_MB (off): heavy-first in groups
# of (batch, head) pairs of ~24 / 64 MB of query rows. GPU tests, then graph replay of the causal rows: alts against
# the A/A copies of the served tiles (flash_bwd_wgmma, flash_bwd_mma), HEAVY_BY_BATCH off as a second reading.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_order_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py > $OUT/heavy_groups_tests_h200_${D}_s25d.log 2>&1
tail -3 $OUT/heavy_groups_tests_h200_${D}_s25d.log
G="grep -v -i warn\|no.tuned.config\|return.Impl"
W=64x128x12x2
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 128 --build-order fixed \
  --alt $W:MMA.HEAVY_GROUP_MB=24,$W:MMA.HEAVY_GROUP_MB=64,$W:-MMA.HEAVY_BY_BATCH,$W,mma:MMA.HEAVY_GROUP_MB=64,mma:-MMA.HEAVY_BY_BATCH,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_heavy_groups_d128_h200_${D}_s25d.log
W=64x64x8x2
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order fixed \
  --alt $W:HEAVY_FIRST+MMA.HEAVY_GROUP_MB=24,$W:HEAVY_FIRST+MMA.HEAVY_GROUP_MB=64,$W:HEAVY_FIRST,$W,mma:MMA.HEAVY_GROUP_MB=64,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_heavy_groups_d64_h200_${D}_s25d.log
