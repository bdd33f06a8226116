#!/bin/bash
# Twenty-eighth session (nvidia-h200): S_ROWS served for flash_bwd_mma's non-causal D 128 tile: the mma backward's GPU
# test files (float64 gradients: plain, S_ROWS, head dims, Dv != D, varlen, variants, block order), then verify.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
L=$OUT/mma_tests_h200_${D}_s28g.log
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 15 -m gpu tests/test_backward_mma_rows_gpu.py \
  tests/test_backward_gpu.py tests/test_backward_head_dim_v_gpu.py tests/test_backward_head_dims_gpu.py \
  tests/test_varlen_backward_gpu.py tests/test_backward_variants_gpu.py tests/test_backward_mma_order_gpu.py > $L 2>&1
tail -3 $L
timeout 60 python3 -m autoflash.cli verify > $OUT/verify_h200_${D}_s28g.log 2>&1
tail -1 $OUT/verify_h200_${D}_s28g.log
