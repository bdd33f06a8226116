#!/bin/bash
# One device call (<= 150 s) for flash_fwd_wgmma's UNIFORM_WG switch (helper FA, issue 18): compile the timed kernels in
# the background, the float64 GPU tests with the switch on (tests/test_wgmma_uniform_wg_gpu.py, 23 runs), then, only if
# they all pass (none failed, errored or skipped), the A/B (benchmarks/wgmma_uniform_wg_ab.py --check: served vs
# UNIFORM_WG vs the served kernel again (A/A), beside SDPA cuDNN; bf16/fp16 D 64 N 1024/4096, causal and not).
# Run from the repository root with $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps.)
export COMPILE_S=${COMPILE_S:-40} TESTS_S=${TESTS_S:-65} BENCH_S=${BENCH_S:-45} BENCH16K_S=0 AB_ARGS=${AB_ARGS:---check}
bash benchmarks/ab_run.sh benchmarks/wgmma_uniform_wg_ab.py tests/test_wgmma_uniform_wg_gpu.py
