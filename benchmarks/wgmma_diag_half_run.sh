#!/bin/bash
# One device call (<= 330 s) for flash_fwd_wgmma's DIAG_HALF (fourteenth session, issue 18: a warpgroup's last key tile
# over the half of its keys it sees; off by default): compile the timed kernels in the background, the float64 GPU
# tests (tests/test_wgmma_diag_half_gpu.py), then, only if they all pass, the A/B (benchmarks/wgmma_diag_half_ab.py
# --check: the served entries with the switch off, on and off again, SDPA cuDNN). Run from the repository root with
# $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps.)
export COMPILE_S=${COMPILE_S:-60} TESTS_S=${TESTS_S:-150} BENCH_S=${BENCH_S:-110} BENCH16K_S=0 AB_ARGS=${AB_ARGS:---check --rounds 9}
bash benchmarks/ab_run.sh benchmarks/wgmma_diag_half_ab.py tests/test_wgmma_diag_half_gpu.py
