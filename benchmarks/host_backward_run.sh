#!/bin/bash
# One device call for the training host path (helpers HB, C2; issue 16 / 18 item 3): compile the kernels in the
# background, the GPU tests (tests/test_backward_host_plans_gpu.py: attention_backward's plan hits against CuPy's
# launcher and the full path, a tuned-file change, autograd steps; tests/test_training_plans_gpu.py: planned
# training steps of attention() and of the drop-in against the full path, torch.compile(fullgraph=True) of the
# drop-in with grads), then, only if they all pass, the host table (benchmarks/host_backward.py: attention_backward,
# the launch plans alone, SDPA cuDNN's backward; attention() and the drop-in fwd+bwd beside SDPA cuDNN's) and its
# cProfiles ($OUT/bench.log). Fits a 150 s call. Run from the repository root with $OUT set, carry=[".whl"].
BENCH16K_S=0 TESTS_S=${TESTS_S:-75} BENCH_S=${BENCH_S:-50} bash benchmarks/ab_run.sh benchmarks/host_backward.py \
  tests/test_backward_host_plans_gpu.py tests/test_training_plans_gpu.py
