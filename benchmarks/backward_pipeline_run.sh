#!/bin/bash
# One device call for ops/backward_wgmma.PIPELINE (helper PL, issue 16's D 64 gap; ~125 s: pip, tests <= 65 s, A/B
# <= 40 s): compile the A/B's kernels in the background, tests/test_backward_wgmma_pipeline_gpu.py (float64 and
# switch-off equality), then, only if they all pass: the A/B (benchmarks/bench_backward_pipeline.py, bf16 D 64 N 4096
# causal both: off, on at stages 2 and 3, beside SDPA cuDNN). Run from the repository root with $OUT set,
# carry=[".whl"]. Logs: $OUT/*.log.
export COMPILE_S=35 TESTS_S=65 BENCH_S=40 BENCH16K_S=0 AB_ARGS="--dtypes bf16"
bash benchmarks/ab_run.sh benchmarks/bench_backward_pipeline.py tests/test_backward_wgmma_pipeline_gpu.py
