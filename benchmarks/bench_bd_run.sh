#!/bin/bash
# One device call for flash_bwd_wgmma's DQ_STAGE_ROTATE (helper BD; issue 16): compile the timed kernels in the
# background, the float64 gradient tests of it (tests/test_backward_wgmma_bd_gpu.py), then, only if they all pass,
# the A/B timing (benchmarks/bench_bd_rotate.py: the producer tile's dQ as per-row bulk ops (D 128's served kernel),
# one bulk op a tile (D 64's served kernel), and the same with the staging stores rotated by 1 and 2 rounds of
# selects, D 64/128 N 4096 bf16/fp16, causal and not, beside SDPA cuDNN; then bf16 D 128 N 16384). Fits a ~140 s
# call. Run from the repository root with $OUT set, carry=[".whl"].
# (benchmarks/ab_run.sh does the steps)
bash benchmarks/ab_run.sh benchmarks/bench_bd_rotate.py tests/test_backward_wgmma_bd_gpu.py
