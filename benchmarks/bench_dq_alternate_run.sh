#!/bin/bash
# One device call for flash_bwd_wgmma's DQ_ALTERNATE switch (helper BK; issue 16): compile the timed kernels in the
# background, the float64 gradient tests with the switch on (tests/test_backward_wgmma_dq_alternate_gpu.py) and
# dq_via_producer's knob tests that pin or serve configs (the rule, the knob spelled 0 / 1), then, only if they all
# pass, the A/B timing (benchmarks/bench_dq_alternate.py: D 64 N 4096 bf16/fp16, causal and not, beside SDPA
# cuDNN). Fits a 110 s call. Run from the repository root with $OUT set, carry=[".whl"].
# (benchmarks/dq_ab_run.sh does the steps)
BENCH16K_S=0 bash benchmarks/dq_ab_run.sh benchmarks/bench_dq_alternate.py \
  tests/test_backward_wgmma_dq_alternate_gpu.py tests/test_backward_wgmma_dq_producer_gpu.py \
  -k "alternat or two_runs or serves_the_rule or d64_bottom or d128_top"
