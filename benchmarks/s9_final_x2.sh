#!/usr/bin/env bash
# Ninth session's closing pass (nvidia-h200-x2, carry .whl), after every change to the served kernels. GPU 0: every
# GPU test, `autoflash verify`, `autoflash bench` (the forward grid), the training step, the host table. GPU 1: the backward's keys
# re-tuned (bwd_tune: the tuned flash_bwd_wgmma entries are served now), bench_backward, the variants, the KV-cache
# tables (varlen after UNIFORM_WG). Results land in $OUT/final.tgz; a watchdog tars what exists at 575 s in case a part overruns the call.
set -uo pipefail
OUT_REAL=$OUT; export OUT=/tmp/fp; mkdir -p $OUT
( sleep 575; tar czf $OUT_REAL/final_partial.tgz -C /tmp/fp . ) &
watchdog=$!
TESTS_TIMEOUT=300 XDIST=22 TESTS_K="not paged_space" GPU0_AFTER="verify bench training host" BENCH_TIMEOUT=180 \
  GPU1_SECONDS=490 BWD_TUNE_TIMEOUT=100 BACKWARD_TIMEOUT=200 VARIANTS_ARGS=--graph KV_TIMEOUT=100 \
  bash benchmarks/final_pass_x2.sh bwd_tune bench_backward bench_variants bench_kvcache > /tmp/fp/final_summary.txt 2>&1
cp tuned_configs/sm_90.json $OUT/sm_90_final.json
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/final.tgz -C /tmp/fp .
tail -c 11000 /tmp/fp/final_summary.txt
