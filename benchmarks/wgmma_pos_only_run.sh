#!/bin/bash
# One device call (<= 330 s) for flash_fwd_wgmma's POS_ONLY (fourteenth session, issue 18: kernels without the softmax
# bodies of scale <= 0, 37 % less code; off by default): compile the timed kernels in the background, forward wgmma GPU
# tests with the switch on (AUTOFLASH_TEST_SWITCHES, tests/conftest.py), then, only if they all pass, the A/B
# (benchmarks/wgmma_switch_ab.py --switch POS_ONLY --check). Run from the repository root with $OUT set, carry=[".whl"].
export WGMMA_SWITCH=POS_ONLY AUTOFLASH_TEST_SWITCHES="autoflash.ops.forward_wgmma.POS_ONLY=True"
export COMPILE_S=${COMPILE_S:-60} TESTS_S=${TESTS_S:-180} BENCH_S=${BENCH_S:-110} BENCH16K_S=0 AB_ARGS=${AB_ARGS:---check --rounds 9}
bash benchmarks/ab_run.sh benchmarks/wgmma_switch_ab.py tests/test_kernels_gpu.py tests/test_wgmma_schedule_gpu.py \
  tests/test_wgmma_uniform_wg_gpu.py
