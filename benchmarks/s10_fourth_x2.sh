#!/usr/bin/env bash
# Tenth session's fourth call (nvidia-h200-x2, carry .whl). GPU 0: every GPU test and `autoflash verify` after the
# strided-only backward (bb11b42), the re-tuned forward entries and helper CL's packed-launch merge. GPU 1: helper TB's
# ops/backward_wgmma.TMA_LOADS (benchmarks/backward_tma_loads_run.sh: its GPU tests, then the A/B beside cuDNN); removed
# after this call (0.95-0.96x at D 64; `git show fb844f1:benchmarks/backward_tma_loads_run.sh`). $OUT/s10d.tgz.
GPU0_PARTS=verify exec bash benchmarks/suite_beside_x2.sh s10d bash benchmarks/backward_tma_loads_run.sh
