#!/bin/bash
# Eighteenth session's last call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh): the
# TAIL_SPLIT tests, then issue 16's backward table (bench_backward, D 64/128 x N 4k/16k x bf16/fp16 x causal) and the
# training step on the session's last code (TAIL_SPLIT served for non-causal grids).
export PYTHONPATH=$PWD:$PWD/benchmarks:$PWD/tests:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
timeout 120 python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_tail_split.py 2>&1 | tail -3 | tee $OUT/tail_split_tests.log
SKIP_PIP=1 BACKWARD_TIMEOUT=300 bash benchmarks/h200_final.sh bench_backward training
