#!/bin/bash
# Twenty-fourth session (nvidia-h200): DQ_FREE_ON_FULL_BLOCKS (off; the walk's DQ_FREE_ON_FULL order in the
# block-a-CTA grids' producer): float64 GPU tests with it on, then graph replay against two A/A copies, 15 rounds.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.DQ_FREE_ON_FULL_BLOCKS=True" AUTOFLASH_TEST_WATCHDOG_S=90 \
  timeout 200 python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_gpu.py \
  tests/test_backward_wgmma_dq_tile_gpu.py tests/test_backward_wgmma_one_consumer_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py tests/test_backward_wgmma_staged_store_gpu.py 2>&1 | tail -5 \
  | tee $OUT/dq_free_on_full_blocks_tests_h200_${D}_s24d.log
S=DQ_FREE_ON_FULL_BLOCKS
timeout 170 python3 benchmarks/bench_backward_graph.py --rounds 15 --head-dims 128 \
  --alt 64x128x12x2:$S,64x128x12x2,64x128x12x2:$S,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_dq_free_on_full_blocks_d128_h200_${D}_s24d.log
timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 15 --head-dims 64 --causal true \
  --alt 64x64x8x2:$S,64x64x8x2,64x64x8x2:$S,64x64x8x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_dq_free_on_full_blocks_d64c_h200_${D}_s24d.log
