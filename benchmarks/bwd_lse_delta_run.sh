#!/bin/bash
# One device call (nvidia-h200, carry=[".whl"]; or one GPU of a shared host: it uses whatever CUDA_VISIBLE_DEVICES
# names): LSE_DELTA_VEC's float64 GPU tests, then, only if they all pass, its A/B beside cuDNN (the switch timed
# between two copies of off in every round): bf16/fp16 x D 64/128 x causal/not at N 4096, and D 64 non-causal at
# N 16384 (benchmarks/bench_backward_lse_delta_vec.py). Under 150 s: at most 70 s of tests (the compile beside them)
# and 60 s of timing after pip.
#   bash benchmarks/bwd_lse_delta_run.sh            (SKIP_PIP=1 where /tmp/site is already installed)
# Logs: $OUT/{compile,tests,bench}.log (benchmarks/ab_run.sh).
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-(all)}"
COMPILE_S=${COMPILE_S:-60} TESTS_S=${TESTS_S:-70} BENCH_S=${BENCH_S:-60} BENCH16K_S=0 AB_ARGS="--seqs 4096,16384" \
  bash benchmarks/ab_run.sh benchmarks/bench_backward_lse_delta_vec.py tests/test_backward_wgmma_lse_delta_vec_gpu.py
