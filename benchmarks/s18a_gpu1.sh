#!/bin/bash
# Eighteenth session, first call, GPU 1 (beside the whole GPU suite and verify on GPU 0, switches at their defaults):
# DQ_STMATRIX's float64 GPU tests, then (if all pass) its A/B beside cuDNN at N 4096 and 16384, the switch timed
# between two copies of off in every round.
SKIP_PIP=1 COMPILE_S=60 TESTS_S=100 BENCH_S=380 BENCH16K_S=0 AB_ARGS="--seqs 4096,16384" \
  bash benchmarks/ab_run.sh benchmarks/bench_backward_dq_stmatrix.py tests/test_backward_wgmma_dq_stmatrix_gpu.py
