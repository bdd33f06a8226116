#!/usr/bin/env bash
# Tenth session's second call (nvidia-h200-x2, carry .whl), after flash_bwd_wgmma's strided kernels became the default
# for views (ops/backward_wgmma.STRIDED on, O laid out like q): GPU 0 every GPU test; GPU 1 the training step
# (bench_training --quick: attention fwd+bwd and the decoder step vs SDPA's default) and the host table. $OUT/s10b.tgz.
exec bash benchmarks/suite_beside_x2.sh s10b bash benchmarks/h200_final.sh training host
