#!/bin/bash
# One device call for flash_bwd_wgmma's UNIFORM_WG (helper BU; issue 16): compile the timed kernels in the
# background, the float64 and off-vs-on bitwise GPU tests (tests/test_backward_wgmma_uniform_wg_gpu.py, 33 items),
# then, only if they all pass, the A/B (benchmarks/bench_bwd_uniform_wg.py: served vs switched vs served A/A beside
# SDPA cuDNN, bf16/fp16 D 64/128 N 4096 causal and not; then bf16 D 128 N 16384). Fits a 150 s call. Run from the
# repository root with $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps)
export COMPILE_S=${COMPILE_S:-40} TESTS_S=${TESTS_S:-60} BENCH_S=${BENCH_S:-55} BENCH16K_S=${BENCH16K_S:-20}
bash benchmarks/ab_run.sh benchmarks/bench_bwd_uniform_wg.py tests/test_backward_wgmma_uniform_wg_gpu.py
