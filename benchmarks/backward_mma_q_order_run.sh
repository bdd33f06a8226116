#!/bin/bash
# One device call for flash_bwd_mma's query-tile order switch (ops/backward_kernels.Q_ORDER; helper MB, issue 16):
# compile the timed and tested kernels in the background, the float64 gradient tests of orders 1 and 2
# (tests/test_backward_mma_q_order_gpu.py), then, only if they all pass, the A/B
# (benchmarks/bench_backward_mma_q_order.py:
# bf16 D 64/128 x N 4096/16384 x causal both; q0 / q1_desc / q2_rot beside SDPA's flash backward). Fits a 150 s call
# on one GPU (CUDA_VISIBLE_DEVICES is left to the caller). Run from the repository root with $OUT set, carry=[".whl"].
# (benchmarks/ab_run.sh does the steps; its N 16384 extra is off: the A/B has its own N 16384 rows)
# Logs in $OUT/mb_q_order/ (compile, tests, bench .log), apart from a command run beside it on another GPU.
export OUT=$OUT/mb_q_order && mkdir -p "$OUT" || exit 1
BENCH_S=${BENCH_S:-65} BENCH16K_S=0 bash benchmarks/ab_run.sh benchmarks/bench_backward_mma_q_order.py \
  tests/test_backward_mma_q_order_gpu.py "$@"
