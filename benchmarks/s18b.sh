#!/bin/bash
# Eighteenth session, second call (nvidia-h200): the padded-head-dim backward's float64 GPU tests first, then the whole
# GPU suite and verify on the session's code (the stmatrix dQ staging served, the backward at every multiple-of-8 head
# dim), then the padded backward timed beside SDPA's backends (bench_backward.py --head-dims 80,96,160 --seqs 4096).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/tests:$PWD/benchmarks AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache PYTHONUNBUFFERED=1
D=$(date +%Y-%m-%d)
timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider -rf tests/test_backward_head_dims_gpu.py \
  tests/test_backward_head_dims.py 2>&1 | tail -12 | tee $OUT/backward_head_dims_tests_h200_${D}_s18b.log
SKIP_PIP=1 XDIST=20 TESTS_TIMEOUT=330 TESTS_K="not paged_space" bash benchmarks/h200_final.sh tests verify
mv $OUT/tests.log $OUT/tests_h200_${D}_s18b.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s18b.log
timeout 90 python3 benchmarks/bench_backward.py --head-dims 80,96,160 --seqs 4096 2>&1 \
  | tee $OUT/bench_backward_padded_h200_${D}_s18b.log | tail -16
