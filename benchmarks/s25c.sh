#!/bin/bash
# Twenty-fifth session (nvidia-h200): HEAVY_BY_BATCH (ops/backward_kernels, off): both templates' heavy-first grids as
# (heads_kv, K/V tiles, batch). Its GPU tests, then graph replay of the causal rows: the switched tile against its A/A
# copy, flash_bwd_wgmma's served tiles (D 128 heavy-first already; D 64 with HEAVY_FIRST too) and flash_bwd_mma's.
# N 16384 (batch 1: the same grid order either way) is the control.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_order_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py > $OUT/heavy_by_batch_tests_h200_${D}_s25c.log 2>&1
tail -3 $OUT/heavy_by_batch_tests_h200_${D}_s25c.log
G="grep -v -i warn\|no.tuned.config\|return.Impl"
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 128 --build-order fixed \
  --alt 64x128x12x2:MMA.HEAVY_BY_BATCH,64x128x12x2,mma:MMA.HEAVY_BY_BATCH,mma 2>&1 | $G \
  | tee $OUT/bench_backward_graph_heavy_by_batch_d128_h200_${D}_s25c.log
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order fixed \
  --alt 64x64x8x2:HEAVY_FIRST+MMA.HEAVY_BY_BATCH,64x64x8x2,mma:MMA.HEAVY_BY_BATCH,mma 2>&1 | $G \
  | tee $OUT/bench_backward_graph_heavy_by_batch_d64_h200_${D}_s25c.log
timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 256 --seqs 4096 \
  --build-order fixed --alt mma:MMA.HEAVY_BY_BATCH,mma 2>&1 | $G \
  | tee $OUT/bench_backward_graph_heavy_by_batch_d256_h200_${D}_s25c.log
