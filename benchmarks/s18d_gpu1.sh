#!/bin/bash
# Eighteenth session's closing call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh):
# issue 16's backward table (bench_backward: D 64/128 x N 4k/16k x bf16/fp16 x causal, the served backward and
# flash_bwd_mma beside SDPA's backends) and the training step, on the session's last code (the stmatrix dQ staging).
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
SKIP_PIP=1 BACKWARD_TIMEOUT=300 bash benchmarks/h200_final.sh bench_backward training
