#!/bin/bash
# Twenty-fifth session (nvidia-h200): flash_bwd_mma HEAVY_FIRST served provisionally (on for tile dims 64/128/256). The
# mma backward GPU test files with it on; its A/B the other way round (two copies off, two A/A copies of the served
# mma tile, columns built in a fixed order) on the causal rows, D 256 included; flash_bwd_wgmma's HEAVY_FIRST at D 64
# (off since s11) against its A/A copy.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 12 tests/test_backward_gpu.py tests/test_backward_variants_gpu.py \
  tests/test_backward_head_dims_gpu.py tests/test_backward_head_dim_v_gpu.py tests/test_varlen_backward_gpu.py \
  tests/test_backward_mma_order_gpu.py tests/test_autograd_gpu.py > $OUT/mma_heavy_first_tests_h200_${D}_s25b.log 2>&1
tail -3 $OUT/mma_heavy_first_tests_h200_${D}_s25b.log
timeout 300 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64,128,256 \
  --build-order fixed --alt mma:-MMA.HEAVY_FIRST,mma,mma:-MMA.HEAVY_FIRST,mma 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_mma_heavy_first_h200_${D}_s25b.log
timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order fixed \
  --alt 64x64x8x2:HEAVY_FIRST,64x64x8x2 --one-consumer 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_wgmma_d64_heavy_first_h200_${D}_s25b.log
