#!/bin/bash
# One device call for flash_bwd_wgmma's dq_via_producer=2 (helper BK; issue 16): compile the timed kernels in the
# background, the float64 gradient tests of it (tests/test_backward_wgmma_dq_tile_gpu.py), then, only
# if they all pass, the A/B timing (benchmarks/bench_dq_tile_reduce.py: D 64/128 N 4096 bf16/fp16, causal and not,
# beside SDPA cuDNN; then bf16 D 128 N 16384). Fits a 110 s call. Run from the repository root with $OUT set,
# carry=[".whl"].
# (benchmarks/ab_run.sh does the steps)
bash benchmarks/ab_run.sh benchmarks/bench_dq_tile_reduce.py tests/test_backward_wgmma_dq_tile_gpu.py
