#!/bin/bash
# Thirteenth session's fifth call, GPU 1 (beside the whole GPU suite on GPU 0, run with
# AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.DS_STMATRIX=True"): DS_STMATRIX's float64 GPU tests, then (if
# all pass) its A/B beside cuDNN, the switch timed between two copies of off in every round.
SKIP_PIP=1 COMPILE_S=60 TESTS_S=150 BENCH_S=200 BENCH16K_S=0 \
  bash benchmarks/ab_run.sh benchmarks/bench_backward_ds_stmatrix.py tests/test_backward_wgmma_ds_stmatrix_gpu.py
