#!/bin/bash
# One device call for flash_fwd_wgmma's rescale skip (WgmmaTemplate.rescale_skip, helper RS after helper SA's census:
# no O rescale when no row of the warp moved its max). Compile the timed kernels in the background, run the GPU tests
# with the switch on (tests/test_wgmma_rescale_skip_gpu.py: O and LSE bitwise equal to the switch off and within the
# float64 reference on the served plain tiles, D 64 / 128 / 256, causal or not, bf16 / fp16; inputs whose max moves
# on every tile and never moves; softcap + window + ALiBi + sinks), then, only if they all pass, the A/B at kernel
# level (benchmarks/wgmma_rescale_ab.py: served plain tiles off vs on beside SDPA cuDNN, bf16, D 64 / 128 / 256,
# causal both, N 4096 and 1024; graph replay, interleaved rounds; --check: on vs off bitwise).
# Run from the repository root with $OUT set, carry=[".whl"]:
#   bash benchmarks/wgmma_rescale_run.sh   (worst case ~150 s: compile 60 s beside tests 80 s, A/B 70 s; logs: $OUT)
# SKIP_PIP=1: /tmp/site is already installed (benchmarks/pending_x2.sh installs it once for all its scripts).
# (benchmarks/ab_run.sh does the steps)
COMPILE_S=${COMPILE_S:-60} TESTS_S=${TESTS_S:-80} BENCH_S=${BENCH_S:-70} BENCH16K_S=0 AB_ARGS="--check --rounds ${ROUNDS:-7}" \
  bash benchmarks/ab_run.sh benchmarks/wgmma_rescale_ab.py tests/test_wgmma_rescale_skip_gpu.py
