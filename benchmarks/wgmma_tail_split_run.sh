#!/bin/bash
# One device call for ops/forward_wgmma.TAIL_SPLIT (issue 18: causal D 64 N 1024 at 0.99-1.00x cuDNN; <= 150 s):
# compile the A/B's kernels in the background, tests/test_wgmma_tail_split_gpu.py (float64, and on == off bitwise),
# then, only if they all pass, the A/B: the served configs of bf16/fp16 D 64 and bf16 D 128 / D 256, causal, N 1024
# and 4096 (262144 tokens), off / on / off again (A/A) / cuDNN. Run from the repository root with $OUT set,
# carry=[".whl"]. Logs: $OUT/*.log.
export COMPILE_S=40 TESTS_S=60 BENCH_S=45 BENCH16K_S=0 AB_ARGS="--rounds 9"
bash benchmarks/ab_run.sh benchmarks/wgmma_tail_split_ab.py tests/test_wgmma_tail_split_gpu.py
