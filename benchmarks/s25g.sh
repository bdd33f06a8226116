#!/bin/bash
# Twenty-fifth session (nvidia-h200), review: the block-order GPU tests after their comparison became one helper.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_order_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py tests/test_backward_gpu.py > $OUT/order_tests_h200_${D}_s25g.log 2>&1
tail -3 $OUT/order_tests_h200_${D}_s25g.log
