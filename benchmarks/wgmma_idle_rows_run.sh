#!/bin/bash
# One device call (<= 150 s) for flash_fwd_wgmma's IDLE_ROWS_SKIP (helper FS, issue 18 item 2; on by default since
# the eleventh session): compile the timed kernels in the background (before and served), the float64 GPU tests
# (tests/test_wgmma_idle_rows_gpu.py), then, only if they all pass (none failed, errored or skipped), the A/B
# (benchmarks/wgmma_idle_rows_ab.py --check: the switch off on every SM, on with its grid rule, on again (A/A), SDPA
# cuDNN; bf16/fp16 D 64 N 1024/4096, bf16 D 128 / D 256 N 1024, causal and not). Limits 45/70/65 s.
# Run from the repository root with $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps.)
export COMPILE_S=${COMPILE_S:-45} TESTS_S=${TESTS_S:-70} BENCH_S=${BENCH_S:-65} BENCH16K_S=0 AB_ARGS=${AB_ARGS:---check}
bash benchmarks/ab_run.sh benchmarks/wgmma_idle_rows_ab.py tests/test_wgmma_idle_rows_gpu.py
