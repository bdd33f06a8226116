#!/bin/bash
# One device call (<= 150 s) for flash_fwd_wgmma's WG_TILES (helper WT, issue 18: causal 192-row tiles where each
# consumer warpgroup stops after its own last key tile; off by default): compile the timed kernels in the background,
# the float64 GPU tests (tests/test_wgmma_wg_tiles_gpu.py), then, only if they all pass (none failed, errored or
# skipped), the A/B (benchmarks/wgmma_wg_tiles_ab.py --check: the served 128 x 128 entry, 192 x 128 s2/s3 causal off
# and on, SDPA cuDNN; bf16/fp16 D 64 causal N 1024/4096). Limits 40/60/45 s.
# Run from the repository root with $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps.)
export COMPILE_S=${COMPILE_S:-40} TESTS_S=${TESTS_S:-60} BENCH_S=${BENCH_S:-45} BENCH16K_S=0 AB_ARGS=${AB_ARGS:---check}
bash benchmarks/ab_run.sh benchmarks/wgmma_wg_tiles_ab.py tests/test_wgmma_wg_tiles_gpu.py
