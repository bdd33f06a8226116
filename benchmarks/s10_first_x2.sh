#!/usr/bin/env bash
# Tenth session's first call (nvidia-h200-x2, carry .whl): GPU 0 every GPU test and `autoflash verify` after the ninth
# session's last host refactors; GPU 1 ops/backward_wgmma.STRIDED's A/B (its tests, the A/A on contiguous inputs, the
# decoder step off / phase 1 / phase 1+2, the step's profile) by benchmarks/backward_strided_run.sh, removed since (the
# strided kernels became the only ones; `git show f6b416d:benchmarks/backward_strided_run.sh`). Results: $OUT/s10.tgz.
GPU0_PARTS=verify exec bash benchmarks/suite_beside_x2.sh s10 bash benchmarks/backward_strided_run.sh
