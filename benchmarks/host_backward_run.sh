#!/bin/bash
# One device call for attention_backward's call plans (helper HB; issue 16 / 18 item 3; switch
# serve/backward_plans.ENABLED, off by default, set on by the tests and the benchmark's rows): compile the kernels in
# the background, the GPU tests (tests/test_backward_host_plans_gpu.py: a hit's gradients against the full path's and
# the path without plans; a tuned-file change; autograd steps), then, only if they all pass, the host table
# (benchmarks/host_backward.py: plans on / off, launch plans alone, SDPA cuDNN; backward alone and forward+backward)
# and its cProfile ($OUT/bench.log). Fits a 150 s call. Run from the repository root with $OUT set, carry=[".whl"].
BENCH16K_S=0 TESTS_S=${TESTS_S:-70} bash benchmarks/ab_run.sh benchmarks/host_backward.py \
  tests/test_backward_host_plans_gpu.py
