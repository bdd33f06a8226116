#!/bin/bash
# Eighteenth session, third call (nvidia-h200): flash_bwd_wgmma at padded head dims (to 128, no producer warpgroup):
# the padded-head-dim tests (now served by it at D <= 128 on sm_90), the backward GPU tests of both templates and
# autograd, then the padded backward timed beside SDPA's backends.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/tests:$PWD/benchmarks AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache PYTHONUNBUFFERED=1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=200 timeout 300 python3 -m pytest -q -n 16 -p no:cacheprovider -rf tests/test_backward_head_dims_gpu.py \
  tests/test_backward_head_dims.py tests/test_backward_gpu.py tests/test_autograd_gpu.py tests/test_varlen_backward_gpu.py \
  $(ls tests/test_backward_wgmma*_gpu.py) 2>&1 | tail -12 | tee $OUT/backward_tests_h200_${D}_s18c.log
timeout 120 python3 benchmarks/bench_backward.py --head-dims 80,96,120 --seqs 4096 2>&1 \
  | tee $OUT/bench_backward_padded_h200_${D}_s18c.log | grep "^|"
