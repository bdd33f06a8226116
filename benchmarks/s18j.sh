#!/bin/bash
# Eighteenth session, closing review's call (nvidia-h200): after sm_count moved to kernels/device.py (host code only;
# renders byte-identical), the GPU tests of its three users (backward tail split, decode, the forward's persistent
# grid) and the padded backward, then autoflash verify.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/tests AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache PYTHONUNBUFFERED=1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -n 16 -p no:cacheprovider -rf tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_serve_decode_gpu.py tests/test_wgmma_idle_rows_gpu.py tests/test_backward_head_dims_gpu.py \
  tests/test_decode_head_dims_gpu.py 2>&1 | tail -4 | tee $OUT/review_tests_h200_${D}_s18j.log
timeout 120 python3 -m autoflash.cli verify 2>&1 | tail -2 | tee $OUT/verify_h200_${D}_s18j.log
