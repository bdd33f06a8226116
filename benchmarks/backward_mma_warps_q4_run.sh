#!/bin/bash
# One device call for flash_bwd_mma's warps_q=4 switch (ops/backward_kernels.WARPS_Q4; helper MB2, issue 16):
# compile the timed and tested kernels in the background, the float64 gradient tests of every warps_q=4 tile
# (tests/test_backward_mma_warps_q4_gpu.py), then, only if they all pass, the A/B
# (benchmarks/bench_backward_mma_warps_q4.py: bf16 D 64 x N 4096/16384 x causal both; the served tuned config and
# every warps_q=4 tile beside SDPA's flash backward). Fits a 150 s call on one GPU. Run from the repository root with
# $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps; its N 16384 extra is off: the A/B has its own.)
# Logs in $OUT/mb2_warps_q4/ (compile, tests, bench .log).
export OUT=$OUT/mb2_warps_q4 && mkdir -p "$OUT" || exit 1
BENCH_S=${BENCH_S:-60} BENCH16K_S=0 bash benchmarks/ab_run.sh benchmarks/bench_backward_mma_warps_q4.py \
  tests/test_backward_mma_warps_q4_gpu.py "$@"
