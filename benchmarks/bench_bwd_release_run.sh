#!/bin/bash
# One device call for flash_bwd_wgmma's PLAIN_STAGES and EARLY_RELEASE (issue 16): compile the timed kernels in the
# background, the switches' float64 gradient tests (tests/test_backward_wgmma_release_gpu.py), then, only if they all
# pass, the A/B (benchmarks/bench_bwd_release.py: D 64/128 N 4096 bf16/fp16, causal and not, beside SDPA cuDNN; then
# bf16 D 128 N 16384). Run from the repository root with $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps)
COMPILE_S=${COMPILE_S:-60} TESTS_S=${TESTS_S:-100} BENCH_S=${BENCH_S:-100} \
    bash benchmarks/ab_run.sh benchmarks/bench_bwd_release.py tests/test_backward_wgmma_release_gpu.py
