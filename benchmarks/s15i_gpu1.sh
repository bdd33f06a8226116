#!/bin/bash
# Fifteenth session's last call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh): the
# backward table on the session's last code (flash_bwd_mma's dQ base address and counters): bench_backward, D 64/128 x
# N 4k/16k x bf16/fp16 x causal, the served backward and flash_bwd_mma's own column beside SDPA's backends.
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
SKIP_PIP=1 BACKWARD_TIMEOUT=330 bash benchmarks/h200_final.sh bench_backward
