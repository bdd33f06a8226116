#!/bin/bash
# One device call for flash_fwd_wgmma's causal trim (WgmmaTemplate.causal_trim, helper FD, issue 18 item 2): compile
# every timed kernel in the background, the float64 tests with the switch on (tests/test_wgmma_fd_gpu.py), then, only
# if they all pass, the A/B at kernel level (served tiles and a second shape, switch off vs on, SDPA cuDNN; graph
# replay, interleaved rounds; --check: trimmed vs untrimmed outputs) on the causal rows below cuDNN: D 64 N 1024 /
# 4096, D 256 N 1024 (and N 4096), bf16 and fp16. Run from the repository root with $OUT set, carry=[".whl"]:
#   bash benchmarks/wgmma_fd_run.sh        (~2-3 min on one H200; logs in $OUT)
# (benchmarks/ab_run.sh does the steps)
COMPILE_S=${COMPILE_S:-90} TESTS_S=${TESTS_S:-150} BENCH_S=${BENCH_S:-240} BENCH16K_S=0 AB_ARGS="--check --rounds ${ROUNDS:-7}" \
  bash benchmarks/ab_run.sh benchmarks/wgmma_fd_ab.py tests/test_wgmma_fd_gpu.py
