#!/bin/bash
# One device call for flash_bwd_wgmma's dq_via_producer knob (helper BQ, then BK; issue 16): compile every timed config
# in the background, the float64 gradient tests with the knob on (tests/test_backward_wgmma_dq_producer_gpu.py),
# then, only if they all pass, the A/B timing against the same tiles without the switch and SDPA cuDNN
# (benchmarks/bench_dq_producer.py, N 4096 bf16/fp16 D 128/64, then bf16 D 128 N 16384). Fits a 150 s call.
# Run from the repository root with $OUT set, carry=[".whl"].
# (benchmarks/ab_run.sh does the steps)
bash benchmarks/ab_run.sh benchmarks/bench_dq_producer.py tests/test_backward_wgmma_dq_producer_gpu.py
